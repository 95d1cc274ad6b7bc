"""The callable trigger: what it records of an answer, and the calls it leaves running."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from chaosproxy.testing.assess.runner import CallableTrigger


@dataclass
class Looked:
    """An app's own result: a status and a JSON-like body (no ``.text``)."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


def test_an_answer_s_body_is_its_text_or_its_json_like_body() -> None:
    class Response:
        status_code = 200
        text = '{"a": 1}'

    assert CallableTrigger(lambda: Response()).__call__().body_excerpt == '{"a": 1}'
    looked = CallableTrigger(lambda: Looked(200, {"source": "cache", "t": 3}))()
    assert (looked.status, looked.body_excerpt) == (200, '{"source": "cache", "t": 3}')
    assert CallableTrigger(lambda: 204)().body_excerpt == ""
    assert CallableTrigger(lambda: b"raw")().body_excerpt == "raw"


def test_a_call_past_its_timeout_is_unanswered_and_settle_waits_for_it() -> None:
    release, ended = threading.Event(), threading.Event()

    def stuck() -> int:
        release.wait(10)
        ended.set()
        return 200

    trigger = CallableTrigger(stuck, timeout=0.05)
    assert trigger().error == "no answer within 0.05s"
    assert trigger.settle(0.05) == 1 and not ended.is_set()  # still running: counted
    release.set()
    assert trigger.settle(5) == 0 and ended.is_set()  # ended: nothing left behind
