from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaosproxy.testing.api import ChaosProxy
from tests.support import UpstreamServer, running_upstream

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def upstream() -> Iterator[UpstreamServer]:
    """A local upstream shared by the session (see tests/support.py for its endpoints)."""
    with running_upstream() as server:
        yield server


@pytest.fixture
def make_proxy(upstream: UpstreamServer) -> Iterator:
    """Start in-process proxies in front of the test upstream; all stopped afterwards."""
    started: list[ChaosProxy] = []

    def make(scenario=None, seed: int | None = None, **kwargs) -> ChaosProxy:
        kwargs.setdefault("upstream", None if kwargs.get("forward") else upstream.url)
        proxy = ChaosProxy(scenario=scenario, seed=seed, **kwargs).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
