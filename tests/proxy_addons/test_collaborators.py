"""The addon's collaborators on their own: timeline, waits, arrival clock, recorder, gate
and the ``--workers`` decider (no sockets, no proxy)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mitmproxy.test import tflow

from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.scenario import load_text
from chaosproxy.proxy_addons.arrivals import ArrivalClock
from chaosproxy.proxy_addons.gate import StartupGate
from chaosproxy.proxy_addons.recorder import DecisionRecorder, summary_lines
from chaosproxy.proxy_addons.timeline import PhaseTimeline
from chaosproxy.proxy_addons.waits import ClientWaits
from chaosproxy.proxy_addons.wire import FlowRequest
from chaosproxy.proxy_addons.workers import CoordinatorDecider

PHASES = """
phases:
  - {name: first, duration: 50ms, rules: []}
  - {name: second, duration: 1h, rules: []}
"""


def test_the_timeline_ticks_the_engine_at_the_phase_boundary() -> None:
    engine = Engine(load_text(PHASES, "p.yaml"), seed=1)
    timeline = PhaseTimeline(engine)
    engine.on_event = timeline.on_event

    async def go() -> list[str | None]:
        timeline.start(asyncio.get_running_loop())
        seen = [engine.phase]
        for _ in range(200):
            if engine.phase == "second":
                break
            await asyncio.sleep(0.01)
        seen.append(engine.phase)
        timeline.stop()
        return seen

    assert asyncio.run(go()) == ["first", "second"]


def test_the_timeline_can_be_rescheduled_from_another_thread() -> None:
    engine = Engine(load_text(PHASES.replace("50ms", "1h"), "long.yaml"), seed=1)
    timeline = PhaseTimeline(engine)

    async def go(reschedule: bool) -> str | None:
        timeline.start(asyncio.get_running_loop())  # armed for an hour from now

        def apply_elsewhere() -> None:  # as the control API's callers may
            engine.apply(load_text(PHASES, "p.yaml"), None)
            if reschedule:
                timeline.reschedule()

        thread = threading.Thread(target=apply_elsewhere)
        thread.start()
        thread.join()
        for _ in range(30):
            if engine.phase == "second":
                break
            await asyncio.sleep(0.01)
        timeline.stop()
        return engine.phase

    assert asyncio.run(go(reschedule=True)) == "second"
    engine.apply(load_text(PHASES.replace("50ms", "1h"), "long.yaml"), None)
    assert asyncio.run(go(reschedule=False)) == "first"  # nothing re-armed the timer


def test_client_waits_end_by_time_by_leaving_or_by_stopping() -> None:
    waits = ClientWaits()

    async def go() -> list[Any]:
        loop = asyncio.get_running_loop()
        timed = await waits.wait(loop, "a", 0.01)
        left = asyncio.ensure_future(waits.wait(loop, "b", None))
        stopped = asyncio.ensure_future(waits.wait(loop, "c", None))
        await asyncio.sleep(0)
        count = waits.count
        waits.client_left("b")
        waits.release_all()
        return [timed, await left, await stopped, count, waits.count]

    assert asyncio.run(go()) == [True, False, None, 2, 0]


def test_the_gate_holds_requests_until_it_opens() -> None:
    gate = StartupGate()

    async def go() -> list[str]:
        gate.hold()
        order: list[str] = []
        waiting = asyncio.ensure_future(gate.wait())
        await asyncio.sleep(0)
        order.append("done" if waiting.done() else "waiting")
        gate.open()
        await waiting
        await gate.wait()  # open: returns at once
        order.append("open")
        return order

    assert asyncio.run(go()) == ["waiting", "open"]


def test_the_arrival_clock_uses_a_first_request_s_earlier_arrival() -> None:
    clock = ArrivalClock()
    flow = tflow.tflow()
    flow.client_conn.tls = False
    stamped = flow.request.timestamp_start
    clock.waiting[flow.client_conn.id] = stamped - 0.5
    clock.note(flow)
    assert clock.arrival(flow) == stamped - 0.5
    assert clock.pop(flow) == stamped - 0.5
    assert clock.arrival(flow) == stamped  # forgotten
    other = tflow.tflow()
    other.client_conn.tls = True  # the waiting bytes were a TLS handshake
    clock.waiting[other.client_conn.id] = other.request.timestamp_start - 0.5
    clock.note(other)
    assert clock.arrival(other) == other.request.timestamp_start


def test_the_recorder_skips_connect_and_names_outcomes() -> None:
    recorder = DecisionRecorder()
    connect = tflow.tflow()
    connect.request.method = "CONNECT"
    recorder.record(connect, None, connect.request.timestamp_start, None)
    refused = tflow.tflow(err=True)
    refused.error.msg = "Connection refused"
    recorder.record(refused, None, refused.request.timestamp_start, "p")
    answered = tflow.tflow(resp=True)
    recorder.record(answered, None, answered.request.timestamp_start, None)
    outcomes = [(r.outcome, r.status, r.phase) for r in recorder.log.records()]
    assert outcomes == [("error", 502, "p"), ("response", 200, None)]


class FakeLink:
    def __init__(self) -> None:
        self.passed = 0
        self.asked: list[SimpleRequest] = []

    def note_passed(self) -> None:
        self.passed += 1

    async def decide(self, request: SimpleRequest) -> Any:
        self.asked.append(request)
        return None


def test_a_worker_asks_the_coordinator_only_when_a_rule_could_match() -> None:
    scenario = load_text(
        "rules: [{name: down, match: {path: /down}, fault: {type: error, status: 503}}]",
        "s.yaml",
    )
    link = FakeLink()
    decider = CoordinatorDecider(Engine(scenario, seed=1), link)  # type: ignore[arg-type]
    other = tflow.tflow()
    other.request.path = "/up"
    assert decider.decide_early(FlowRequest(other, None)) == (True, None)
    assert decider.decide(FlowRequest(other, None), other.request) is None
    assert link.passed == 2 and link.asked == []
    down = tflow.tflow()
    down.request.path = "/down"
    assert decider.decide_early(FlowRequest(down, None)) == (False, None)
    pending = decider.decide(FlowRequest(down, None), down.request)
    assert asyncio.run(pending) is None  # type: ignore[arg-type]
    assert [r.path for r in link.asked] == ["/down"] and link.passed == 2


def test_a_workers_scenario_applier_applies_in_order_and_drops_the_rest_when_closed() -> None:
    import threading

    from chaosproxy.proxy_addons.workers import ScenarioApplier

    started, release = threading.Event(), threading.Event()
    applied: list[str] = []

    def apply(scenario: str, source: str | None) -> None:
        started.set()
        release.wait(10)
        applied.append(scenario)

    applier = ScenarioApplier(apply)
    first = applier.submit("a", None)
    assert started.wait(10)
    later = [applier.submit(name, None) for name in ("b", "c")]
    applier.close()  # returns at once: "a" is still being applied
    assert all(f.cancelled() for f in later)
    release.set()
    first.result(timeout=10)
    assert applied == ["a"]


def test_the_exit_summary_counts_in_agreeing_words() -> None:
    engine = Engine(load_text("rules:\n  - {name: fail, fault: {type: error}}\n", "s.yaml"), seed=1)
    assert engine.decide(SimpleRequest(method="GET", host="api", path="/")) is not None
    assert summary_lines(engine)[0] == "summary: 1 fault injected into 1 request (scenario inline, seed 1)"

