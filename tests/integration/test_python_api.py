"""The in-process Python API: several ChaosProxy objects in one process keep their own
scenario, seed, counters and decisions (mitmproxy's ctx is process-global; ours is not)."""

from __future__ import annotations

import socket
import threading
import time

import requests

from chaosproxy.testing.api import ChaosProxy
from tests.support import UpstreamServer, wait_until


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    r = requests.get(url, timeout=10)
    return r.status_code, time.monotonic() - started


def test_two_proxies_in_one_process_do_not_share_state(upstream: UpstreamServer) -> None:
    slow = {"name": "slow", "rules": [{"fault": {"type": "latency", "delay": "600ms"}}]}
    quick = {"name": "quick", "rules": [{"fault": {"type": "latency", "delay": "50ms"}}]}
    with (
        ChaosProxy(upstream=upstream.url, scenario=slow, seed=1) as a,
        ChaosProxy(upstream=upstream.url, scenario=quick, seed=2) as b,
    ):
        assert a.port != b.port
        results: dict[str, tuple[int, float]] = {}
        threads = [
            threading.Thread(target=lambda: results.__setitem__("a", timed_get(f"{a.url}/x"))),
            threading.Thread(target=lambda: results.__setitem__("b", timed_get(f"{b.url}/x"))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results["a"][0] == results["b"][0] == 200
        assert results["a"][1] >= 0.6
        assert 0.05 <= results["b"][1] < 0.5  # not the other proxy's 600 ms
        assert (a.seed, b.seed) == (1, 2)
        assert (a.stats["scenario"], b.stats["scenario"]) == ("slow", "quick")

        b.apply({"rules": [{"fault": {"type": "error", "status": 503}}]})
        assert requests.get(f"{b.url}/y").status_code == 503
        assert requests.get(f"{a.url}/y").status_code == 200  # a is untouched
        assert [d.path for d in a.decisions] == ["/x", "/y"]
        assert [d.status for d in b.decisions] == [200, 503]
        assert a.stats["requests"] == 2 and b.stats["requests"] == 1  # b's apply reset it
        a_port = a.port
    with socket.socket() as s:  # stopped: the port is free again
        s.bind(("127.0.0.1", a_port))


def test_a_stopped_proxy_leaves_the_other_serving(upstream: UpstreamServer) -> None:
    first = ChaosProxy(upstream=upstream.url, scenario="healthy").start()
    second = ChaosProxy(upstream=upstream.url, scenario="outage").start()
    try:
        first.stop()
        try:
            requests.get(f"{second.url}/x", timeout=5)
        except requests.ConnectionError:
            pass
        else:
            raise AssertionError("outage should reset the connection")
        wait_until(lambda: second.decisions)  # recorded once the flow's error hook ran
        assert second.decisions[-1].outcome == "reset"
        assert second.calls.injected[-1].rule == "connection-reset"
    finally:
        second.stop()
