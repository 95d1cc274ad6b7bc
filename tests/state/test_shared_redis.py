"""RedisState against a real redis-server, in process: replicas decide as one engine would,
and a Redis that hangs costs a request at most the decision timeout."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chaosproxy.core.engine import Decision, Engine, SimpleRequest
from chaosproxy.core.scenario import load_text
from chaosproxy.state import parse_url, selection
from chaosproxy.state.shared import CONTROL_TIMEOUT, DECISION_TIMEOUT, RedisState
from tests.support import RedisServer, running_redis

SCENARIO = """
name: mixed
seed: 5
rules:
  - {name: a, match: {path: /x}, skip: 1, every: 2, times: 6, probability: 0.7,
     fault: {type: error, status: 500}}
  - {name: b, match: {path: /x}, per_request: {times: 2}, probability: 0.6,
     fault: {type: error, status: 502}}
  - {name: c, match: {path: /x}, sticky: header:X-User, probability: 0.3,
     fault: {type: error, status: 503}}
  - {name: d, match: {path: /x, headers: {X-Api-Key: key0}}, fault: {type: rate_limit, limit: 3, per: 60s,
     key: header:X-Api-Key}}
  - {name: e, match: {path: /x}, probability: 0.2, fault: {type: error, status: 504}}
"""


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def _request(i: int) -> SimpleRequest:
    return SimpleRequest(
        "POST",
        "h",
        "/x" if i % 7 else "/passthrough",
        headers=[
            ("X-User", f"user{i % 3}"),
            ("X-Api-Key", f"key{i % 2}"),
            ("Idempotency-Key", f"op{i % 5}"),
        ],
        content=b"{}",
    )


def _summary(decision: Decision | None) -> tuple[Any, ...] | None:
    if decision is None:
        return None
    return (decision.name, decision.match_number, decision.retry_after, decision.attempt)


async def _replicas(url: str, n: int, timeout: float | None = None) -> list[RedisState]:
    parsed = parse_url(url)
    assert parsed is not None
    out = []
    for _ in range(n):
        engine = Engine(load_text(SCENARIO))
        state = RedisState(parsed, engine, timeout=timeout)
        await state.start()
        engine.start()
        await state.join()
        out.append(state)
    return out


async def _decide(state: RedisState, req: SimpleRequest) -> Decision | None:
    verdict = state.decide(req)
    return await verdict if asyncio.iscoroutine(verdict) else verdict  # type: ignore[return-value]


@pytest.mark.parametrize("window", [selection.DRAW_WINDOW, 2])
def test_three_replicas_decide_as_one_engine(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    # window 2: the store keeps asking for draws further on (each replica lags by two)
    monkeypatch.setattr(selection, "DRAW_WINDOW", window)
    reference = Engine(load_text(SCENARIO))
    expected = [_summary(reference.decide(_request(i))) for i in range(120)]

    async def run() -> list[tuple[Any, ...] | None]:
        # a loaded machine can miss 50 ms, and that request is decided alone: not here
        replicas = await _replicas(redis.url, 3, timeout=2.0)
        try:
            return [_summary(await _decide(replicas[i % 3], _request(i))) for i in range(120)]
        finally:
            for state in replicas:
                state.stop()
            await asyncio.sleep(0.05)

    got = asyncio.run(run())
    assert got == expected
    assert {name for name, *_ in filter(None, expected)} == {"a", "b", "c", "d", "e"}


def test_a_hung_redis_costs_a_request_the_timeout_once_then_nothing(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chaosproxy")
    assert redis.proc is not None

    async def run() -> int:
        (state,) = await _replicas(redis.url, 1)
        try:
            await _decide(state, _request(1))
            assert not state.degraded and state.fallbacks == 0
            redis.proc.send_signal(signal.SIGSTOP)  # answers nothing, closes nothing
            try:
                waits = []
                i = 2
                while not state.degraded:  # each waits 50 ms at most, until a ping fails
                    started = time.monotonic()
                    await _decide(state, _request(i))
                    waits.append(time.monotonic() - started)
                    i += 1
                assert max(waits) < DECISION_TIMEOUT + 0.1, waits
                assert len(waits) <= CONTROL_TIMEOUT / DECISION_TIMEOUT + 5, waits
                started = time.monotonic()
                for j in range(i, i + 20):
                    await _decide(state, _request(j))
                rest = time.monotonic() - started
                assert state.health()["status"] == "degraded"
                assert rest < 0.1, rest  # no more waiting while it is away
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            fallbacks = state.fallbacks
            assert fallbacks >= 15  # /x requests only: passthrough never asks
            deadline = time.monotonic() + 10
            while state.degraded and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert not state.degraded
            await _decide(state, _request(22))
            assert state.fallbacks == fallbacks  # decided by the store again
            assert f"chaosproxy_state_fallbacks_total {fallbacks}" in state.metrics_text()
            return fallbacks
        finally:
            state.stop()
            await asyncio.sleep(0.05)

    fallbacks = asyncio.run(run())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    again = [r.getMessage() for r in caplog.records if "again: deciding" in r.getMessage()]
    assert len(again) == 1
    assert f"({fallbacks} decisions were made with this replica's own state)" in again[0]


def test_a_replica_starts_without_redis_and_joins_when_it_comes(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis.kill()

    async def run() -> None:
        (state,) = await _replicas(redis.url, 1)
        try:
            assert state.degraded
            await _decide(state, _request(1))  # /x: decided alone
            assert state.fallbacks == 1
            redis.start()
            deadline = time.monotonic() + 10
            while state.degraded and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert not state.degraded and state.version == 1  # shared its scenario
            stats = await state.cluster_stats()
            assert stats["replicas"] == 1 and stats["scope"] == "cluster"
        finally:
            state.stop()
            await asyncio.sleep(0.05)

    asyncio.run(run())
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1


PHASES = """
name: timeline
phases:
  - name: first
    duration: 400ms
    rules: [{name: two, every: 2, fault: {type: error, status: 500}}]
  - name: second
    rules: [{name: three, every: 3, fault: {type: error, status: 503}}]
"""


def test_phases_change_together_and_count_once_in_each(redis: RedisServer) -> None:
    parsed = parse_url(redis.url)
    assert parsed is not None

    async def run() -> list[tuple[str | None, str | None, int | None]]:
        replicas = []
        for _ in range(2):
            engine = Engine(load_text(PHASES))
            state = RedisState(parsed, engine, timeout=2.0)
            await state.start()
            engine.start()
            await state.join()
            replicas.append(state)
        try:
            # both count from the first replica's start: the same phase, the same keys
            starts = {s.engine.timeline_state()[1] for s in replicas}
            assert len(starts) == 1
            out = []
            for i in range(4):
                state = replicas[i % 2]
                d = await _decide(state, SimpleRequest("GET", "h", "/p"))
                out.append((state.engine.phase, d and d.name, d and d.match_number))
            await asyncio.sleep(0.45)  # the second phase, on the shared clock
            for i in range(6):
                state = replicas[i % 2]
                d = await _decide(state, SimpleRequest("GET", "h", "/p"))
                out.append((state.engine.phase, d and d.name, d and d.match_number))
            return out
        finally:
            for state in replicas:
                state.stop()
            await asyncio.sleep(0.05)

    got = asyncio.run(run())
    assert got == [
        ("first", None, None), ("first", "two", 2), ("first", None, None), ("first", "two", 4),
        ("second", None, None), ("second", None, None), ("second", "three", 3),
        ("second", None, None), ("second", None, None), ("second", "three", 6),
    ]  # fmt: skip
