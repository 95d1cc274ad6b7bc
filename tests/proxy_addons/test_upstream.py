"""The addon's upstream collaborator on its own (proxy_addons/upstream.py) and the relay's
refusal line: bounded, rate-limited warnings and the read timeout's clock (no proxy)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaosproxy.core.timeouts import Timeouts
from chaosproxy.proxy_addons import upstream as upstream_module
from chaosproxy.proxy_addons.relay import Relay
from chaosproxy.proxy_addons.upstream import TIMED_OUT_KEY, UpstreamDeadlines, UpstreamHealth


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_each_of_the_first_failing_upstreams_gets_one_warning_and_its_recovery_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = UpstreamHealth(limit=10, loud=2)
    with caplog.at_level(logging.INFO, logger="chaosproxy"):
        for _ in range(3):
            health.failed("a:1", "is unreachable (refused)", "clients get 502 until it answers")
        health.failed("b:1", "did not answer within 1s", "clients get 504 until it answers")
        health.answered("a:1")
        health.answered("a:1")
    assert _warnings(caplog) == [
        "upstream a:1 is unreachable (refused): clients get 502 until it answers",
        "upstream b:1 did not answer within 1s: clients get 504 until it answers",
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "upstream a:1 answers again"
    ]
    assert list(health.failing) == ["b:1"]


def test_many_failing_upstreams_are_remembered_in_bounds_and_logged_on_one_counted_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = UpstreamHealth(limit=50, loud=3)
    with caplog.at_level(logging.INFO, logger="chaosproxy"):
        for i in range(1000):  # a forward-mode client asking for many dead hosts
            health.failed(f"dead{i}:80", "is unreachable (no route)", "clients get 502")
        for i in range(1000):
            health.answered(f"dead{i}:80")  # only the warned ones say they are back
    lines = _warnings(caplog)
    assert lines[:3] == [
        f"upstream dead{i}:80 is unreachable (no route): clients get 502" for i in range(3)
    ]
    assert len(lines) == 4, lines  # one counted line for the other 997 (within a minute)
    assert lines[3].startswith("more upstreams are unreachable or late (over 3 at once)")
    assert health.more.count == 997
    assert len(health.failing) == 0
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"upstream dead{i}:80 answers again" for i in range(3)]


def test_forgetting_a_warned_upstream_makes_no_room_for_more_warning_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = UpstreamHealth(limit=2, loud=1)
    with caplog.at_level(logging.WARNING, logger="chaosproxy"):
        for name in ["a", "b", "c", "a", "d"]:  # a is forgotten, then fails again
            health.failed(name, "is unreachable", "502")
    lines = _warnings(caplog)
    assert lines[0] == "upstream a is unreachable: 502"
    assert len(lines) == 2 and lines[1].startswith("more upstreams"), lines
    assert health.more.count == 3  # b, c, d; a again is still its first failure


def test_the_failing_table_keeps_the_most_recently_failed_upstreams() -> None:
    health = UpstreamHealth(limit=3, loud=10)
    for name in ["a", "b", "c", "a", "d"]:  # a fails again: b is now the oldest
        health.failed(name, "is unreachable", "502")
    assert list(health.failing) == ["c", "a", "d"]


def _connecting_flow() -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.live = True
    flow.server_conn.timestamp_tcp_setup = None
    return flow


def _deadlines(
    monkeypatch: pytest.MonkeyPatch, *, read: float
) -> tuple[UpstreamDeadlines, list[float]]:
    """Deadlines with a 5 s connect and ``read`` s read timeout; the loop times of give-ups."""
    gave_up: list[float] = []
    monkeypatch.setattr(
        upstream_module.upstreamtimeout,
        "give_up",
        lambda handler, flow, answer: gave_up.append(asyncio.get_running_loop().time()) or True,
    )
    deadlines = UpstreamDeadlines(UpstreamHealth(), lambda client: object())
    deadlines.timeouts = Timeouts(5.0, read)
    return deadlines, gave_up


def test_the_read_timeout_counts_on_the_loop_clock_even_when_the_wall_clock_jumps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deadlines, gave_up = _deadlines(monkeypatch, read=0.3)
    flow = _connecting_flow()
    real_time = time.time

    async def run() -> float:
        loop = asyncio.get_running_loop()
        deadlines.arm(flow)
        await asyncio.sleep(0.1)  # connecting
        flow.server_conn.timestamp_tcp_setup = real_time()
        deadlines.connected(flow.server_conn)
        up = loop.time()
        # the wall clock is set back an hour (NTP, a VM resumed): the deadline must not move
        monkeypatch.setattr(time, "time", lambda: real_time() - 3600)
        while not gave_up and loop.time() - up < 3.0:
            await asyncio.sleep(0.01)
        return up

    up = asyncio.run(run())
    assert gave_up, "the read timeout never passed"
    assert 0.29 <= gave_up[0] - up < 1.0, gave_up[0] - up
    assert flow.metadata[TIMED_OUT_KEY] == "did not answer within 0.3s"
    deadlines.disconnected(flow.server_conn)
    assert deadlines.pending == 0


def test_a_connection_up_before_the_request_counts_the_read_timeout_from_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deadlines, gave_up = _deadlines(monkeypatch, read=0.2)
    flow = _connecting_flow()

    async def run() -> float:
        loop = asyncio.get_running_loop()
        deadlines.connected(flow.server_conn)  # a kept-alive connection, up long before
        flow.server_conn.timestamp_tcp_setup = time.time()
        await asyncio.sleep(0.2)
        sent = loop.time()
        deadlines.arm(flow)
        while not gave_up and loop.time() - sent < 3.0:
            await asyncio.sleep(0.01)
        return sent

    sent = asyncio.run(run())
    assert gave_up and 0.19 <= gave_up[0] - sent < 0.8, (gave_up, sent)


@pytest.mark.wire
def test_a_failing_relay_route_is_one_counted_warning_not_one_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = Relay()

    async def ask(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nx-chaosproxy-relay: nope\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        return head

    async def run() -> list[bytes]:
        port = await relay.start()
        try:
            return [await ask(port) for _ in range(5)]
        finally:
            relay.close()

    with caplog.at_level(logging.DEBUG, logger="chaosproxy"):
        heads: list[Any] = asyncio.run(run())
    assert all(h.startswith(b"HTTP/1.1 502") for h in heads), heads
    lines = [line for line in _warnings(caplog) if line.startswith("relay:")]
    assert len(lines) == 1, lines
    assert "(1 time since the last such line, 1 in all" in lines[0]
    assert relay.refused.count == 5
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug.count("relay: unknown or expired relay token") == 5
