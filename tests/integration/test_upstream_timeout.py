"""Upstream timeouts (issue 22 item 8): an upstream that does not accept a connection, or
does not send its answer's head in time, gets the client a 504 shaped as the ``timeout``
fault's, and its connection closed; an upstream within the timeouts is never cut."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests

from chaosproxy.core.timeouts import Timeouts
from tests.reliability.census import census
from tests.reliability.rawwire import Blackhole, RawUpstream, read_head
from tests.support import UpstreamServer, wait_until


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    with Blackhole() as up:
        yield up


@pytest.fixture
def unaccepting() -> Iterator[str]:
    """An upstream whose accept queue is full: connecting to it hangs (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filled: list[socket.socket] = []
    while True:
        sock = socket.socket()
        sock.settimeout(0.3)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            break
        filled.append(sock)
    yield f"http://127.0.0.1:{port}"
    for sock in filled:
        sock.close()
    listener.close()


def _fault_answer(make_proxy, upstream: UpstreamServer) -> dict:
    proxy = make_proxy(
        {
            "seed": 1,
            "rules": [{"name": "t", "fault": {"type": "timeout", "after": "10ms", "then": 504}}],
        }
    )
    answer = requests.get(f"{proxy.url}/x", timeout=10)
    assert answer.status_code == 504
    return answer.json()


def test_an_upstream_that_never_answers_gets_a_504_after_the_read_timeout(
    make_proxy, upstream: UpstreamServer, blackhole: Blackhole
) -> None:
    shape = _fault_answer(make_proxy, upstream)
    proxy = make_proxy(upstream=blackhole.url, upstream_timeout="connect=5s,read=0.5s")
    session = requests.Session()
    for _ in range(2):  # and again: the proxy keeps serving the same client
        started = time.monotonic()
        answer = session.get(f"{proxy.url}/slow", timeout=10)
        took = time.monotonic() - started
        assert answer.status_code == 504
        assert 0.5 <= took < 1.0, took
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert set(shape) <= set(body)  # the timeout fault's shape, plus what timed out
        assert body["error"] == shape["error"] == "Gateway Timeout"
        assert body["status"] == 504 and body["rule"] is None
        assert body["upstream"] == f"127.0.0.1:{blackhole.port} did not answer within 0.5s"
    wait_until(lambda: blackhole.open == 0, timeout=5)  # the upstream connection was closed
    record = proxy.decisions[-1]
    assert (record.outcome, record.status, record.upstream_status) == ("response", 504, None)
    assert record.error == "upstream did not answer within 0.5s"
    assert proxy.stats["requests"] == len(proxy.decisions) == 2
    wait_until(lambda: proxy.addon.deadlines.pending == 0 and census(proxy)["in_flight"] == 0)


def test_an_upstream_that_never_accepts_gets_a_504_after_the_connect_timeout(
    make_proxy, unaccepting: str
) -> None:
    proxy = make_proxy(upstream=unaccepting, upstream_timeout="connect=0.5s,read=30s")
    started = time.monotonic()
    answer = requests.get(f"{proxy.url}/x", timeout=10)
    assert answer.status_code == 504
    assert 0.5 <= time.monotonic() - started < 1.5
    assert answer.json()["upstream"].endswith("did not accept a connection within 0.5s")
    assert proxy.decisions[-1].upstream_status is None


def test_a_throttled_request_to_a_silent_upstream_times_out_and_closes_the_relay(
    make_proxy, blackhole: Blackhole
) -> None:
    proxy = make_proxy(
        {"seed": 1, "rules": [{"name": "slow", "fault": {"type": "throttle", "rate": "1KB/s"}}]},
        upstream=blackhole.url,
        upstream_timeout=0.5,
    )
    answer = requests.get(f"{proxy.url}/x", timeout=10)
    assert answer.status_code == 504 and answer.json()["status"] == 504
    wait_until(lambda: blackhole.open == 0 and proxy.addon.relay.active == 0, timeout=5)
    record = proxy.decisions[-1]
    assert (record.rule, record.status, record.upstream_status) == ("slow", 504, None)


def _late(seconds: float):
    def handler(conn: socket.socket) -> None:
        read_head(conn)
        time.sleep(seconds)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.recv(1)  # until the proxy closes

    return handler


def test_an_upstream_within_the_read_timeout_is_never_cut(make_proxy) -> None:
    with RawUpstream(_late(0.3)) as up:
        proxy = make_proxy(upstream=up.url, upstream_timeout="read=1s")
        answer = requests.get(f"{proxy.url}/x", timeout=10)
        assert (answer.status_code, answer.text) == (200, "ok")
        assert proxy.decisions[-1].upstream_status == 200


def test_off_waits_for_the_upstream(make_proxy, blackhole: Blackhole) -> None:
    proxy = make_proxy(upstream=blackhole.url, upstream_timeout="off")
    assert proxy.addon.deadlines.timeouts == Timeouts(None, None)
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{proxy.url}/x", timeout=1.5)


def test_the_defaults_are_connect_10s_read_60s(make_proxy, blackhole: Blackhole) -> None:
    proxy = make_proxy(upstream=blackhole.url)
    assert proxy.addon.deadlines.timeouts == Timeouts(10.0, 60.0)
