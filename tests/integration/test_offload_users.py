"""Several proxies in one process share the scenario loading process (review of issue 22).

Each control server and watcher holds it while it runs; before, stopping any one of them
ended it for all, and another proxy's large PUT in progress fell back to a thread with a
warning ("the scenario loading process ended").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import requests

from chaosproxy.control import offload
from tests.support import wait_until


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    handler = Records()
    logger = logging.getLogger("chaosproxy")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def large_scenario(rules: int = 400) -> str:
    """Over offload.THREAD_LIMIT bytes: it loads in the worker process."""
    rule = (
        "  - name: r{i}\n    match: {{path: /r/{i}/*}}\n    fault: {{type: error, body: {pad}}}\n"
    )
    text = "name: large\nrules:\n" + "".join(rule.format(i=i, pad="p" * 200) for i in range(rules))
    assert len(text) > 1.5 * offload.THREAD_LIMIT
    return text


def busy_processes() -> int:
    pool = offload._pool
    return len(getattr(pool, "_processes", None) or {}) if pool is not None else 0


def test_stopping_one_proxy_leaves_the_others_load_in_the_process(make_proxy, warnings) -> None:
    first = make_proxy("flaky", admin=True)
    second = make_proxy("flaky", admin=True)
    answers: list[requests.Response] = []
    put = threading.Thread(
        target=lambda: answers.append(
            requests.put(f"{second.admin_url}/scenario", data=large_scenario(), timeout=120)
        )
    )
    put.start()
    try:
        wait_until(lambda: busy_processes() > 0, timeout=30)  # the load is under way
        first.stop()
    finally:
        put.join(120)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert answers[0].json()["name"] == "large"
    assert not [m for m in warnings if "loading process ended" in m], warnings
    assert busy_processes() == 1  # still there for the next load
    second.stop()
    assert offload._pool is None  # the last user ended it


def test_the_process_ends_when_the_last_user_releases_it() -> None:
    import asyncio
    import os

    offload.acquire()
    offload.acquire()
    try:
        pid = asyncio.run(offload.run(os.getpid, size=offload.THREAD_LIMIT))
        assert pid != os.getpid()
        offload.release()
        assert offload._pool is not None  # one user left
    finally:
        offload.release()
    assert offload._pool is None
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        offload.release()
