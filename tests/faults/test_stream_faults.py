"""``stream_cut``, ``stream_stall``, ``stream_slow_start``: the plan each gives the wire
(through the FakeWire), how each describes itself, and what each refuses."""

from __future__ import annotations

import asyncio
import re

import pytest

from chaosproxy.core.fault import FAULT_TYPES, Stage
from chaosproxy.core.scenario import ScenarioError, load_text
from chaosproxy.core.streams import End, StreamPlan, Unit
from chaosproxy.faults.stream_cut import StreamCut
from chaosproxy.faults.stream_slow_start import StreamSlowStart
from chaosproxy.faults.stream_stall import StreamStall
from tests.faults.fakewire import FakeWire


def loaded(fault: str):
    [rule] = load_text(f"rules:\n  - fault: {fault}\n").rules
    [one] = rule.fault
    return one


def plan_of(fault: str) -> StreamPlan:
    wire = FakeWire()
    asyncio.run(loaded(fault).apply(wire))
    [(action, plan)] = wire.actions
    assert action == "shape" and not wire.ended
    return plan


@pytest.mark.parametrize(
    ("fault", "plan", "summary"),
    [
        (
            "{type: stream_cut, events: 5}",
            StreamPlan(after=5, unit=Unit.EVENTS, end=End.RESET),
            "stream_cut after 5 events (reset)",
        ),
        (
            "{type: stream_cut, events: 1, mode: clean}",
            StreamPlan(after=1, end=End.CLEAN),
            "stream_cut after 1 event (clean)",
        ),
        (
            "{type: stream_cut, bytes: 2KB, mode: truncated}",
            StreamPlan(after=2000, unit=Unit.BYTES, end=End.TRUNCATED),
            "stream_cut after 2KB (truncated)",
        ),
        (
            "{type: stream_stall, events: 3, pause: 1.5s}",
            StreamPlan(after=3, pause=1.5),
            "stream_stall 1.5s after 3 events, then continue",
        ),
        (
            "{type: stream_stall, bytes: 100, pause: 200ms, then: cut}",
            StreamPlan(after=100, unit=Unit.BYTES, pause=0.2, end=End.RESET),
            "stream_stall 200ms after 100B, then cut (reset)",
        ),
        (
            "{type: stream_stall, events: 0, pause: 1s, then: cut, mode: clean}",
            StreamPlan(after=0, pause=1.0, end=End.CLEAN),
            "stream_stall 1s after 0 events, then cut (clean)",
        ),
        (
            "{type: stream_slow_start, delay: 2s}",
            StreamPlan(first_byte=2.0),
            "stream_slow_start 2s",
        ),
    ],
)
def test_each_gives_the_wire_a_plan_and_describes_itself(fault, plan, summary) -> None:
    assert plan_of(fault) == plan
    assert loaded(fault).describe() == summary


def test_they_are_registered_streaming_request_stage_faults() -> None:
    for name, cls in [
        ("stream_cut", StreamCut),
        ("stream_stall", StreamStall),
        ("stream_slow_start", StreamSlowStart),
    ]:
        assert FAULT_TYPES[name] is cls
        caps = cls.capabilities()
        assert caps.streams_body and caps.stages == (Stage.REQUEST,)
        assert not (caps.needs_body or caps.stateful or caps.gates)


def test_a_long_pause_needs_allow_long() -> None:
    assert loaded("{type: stream_stall, events: 1, pause: 11m, allow_long: true}").pause == 660
    assert loaded("{type: stream_slow_start, delay: 11m, allow_long: true}").delay == 660


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("{type: stream_cut}", "give events (e.g. events: 5) or bytes"),
        ("{type: stream_cut, events: 1, bytes: 10}", "give events (e.g. events: 5) or bytes"),
        ("{type: stream_cut, events: -1}", "rules[0].fault.events: must be a whole number"),
        ("{type: stream_cut, events: 2.5}", "rules[0].fault.events: must be a whole number, got 2.5"),
        ("{type: stream_cut, bytes: -1}", "rules[0].fault.bytes: a size must be a finite number"),
        ("{type: stream_cut, events: 2, mode: rst}", "rules[0].fault.mode"),
        ("{type: stream_stall, events: 2}", "missing required key 'pause'"),
        ("{type: stream_stall, events: 2, pause: 1s, mode: clean}", "give it with then: cut"),
        ("{type: stream_stall, events: 2, pause: 11m}", "pause of 11m is longer than 10m"),
        ("{type: stream_stall, events: 2, pause: 1s, then: stop}", "rules[0].fault.then"),
        ("{type: stream_slow_start}", "missing required key 'delay'"),
        ("{type: stream_slow_start, delay: 11m}", "delay of 11m is longer than 10m"),
        ("{type: stream_slow_start, delay: 1s, events: 2}", "unknown key 'events'"),
    ],
)
def test_refused_with_a_located_error(fault: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)) as info:
        load_text(f"rules:\n  - fault: {fault}\n")
    assert str(info.value).startswith("<string>:2:")


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        (
            "[{type: stream_cut, events: 1}, {type: stream_stall, events: 1, pause: 1s}]",
            "stream_cut and stream_stall both stream the body, and a rule has at most one "
            "fault that does; put them in separate rules",
        ),
        (
            "[{type: stream_slow_start, delay: 1s}, {type: throttle, rate: 1KB/s}]",
            "stream_slow_start and throttle both stream the body",
        ),
        (
            "[{type: stream_cut, events: 1}, {type: stream_cut, events: 2}]",
            "a rule has at most one stream_cut",
        ),
        (
            "[{type: stream_cut, events: 1}, {type: malformed, mode: truncate}]",
            "stream_cut streams the body as it arrives, so it cannot be combined with faults "
            "that act on the whole answer (malformed truncate",
        ),
        (
            "[{type: stream_cut, events: 1}, {type: error, status: 502, on: response}]",
            "the whole answer (error 502 on response); put them in separate rules",
        ),
    ],
)
def test_one_streaming_fault_per_rule_and_nothing_on_the_whole_answer(
    faults: str, message: str
) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)) as info:
        load_text(f"rules:\n  - fault: {faults}\n")
    assert str(info.value).startswith("<string>:2:")


def test_request_stage_faults_combine_with_them() -> None:
    [rule] = load_text(
        "rules:\n  - fault: [{type: latency, delay: 100ms}, {type: stream_cut, events: 2}]\n"
    ).rules
    assert [f.type for f in rule.fault] == ["latency", "stream_cut"]
