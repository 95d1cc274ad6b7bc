"""The ``ws_*`` fault types against a fake message wire: what each does to a message, their
validation, and the engine matching their rules against WebSocket upgrades only."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from chaosproxy.core.decisions import DecisionRecord
from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.metrics import Metrics
from chaosproxy.core.scenario import ScenarioError, load_text
from chaosproxy.core.websocket import Direction, MessageFault
from chaosproxy.faults.ws_close import WsClose
from chaosproxy.faults.ws_corrupt import WsCorrupt
from chaosproxy.faults.ws_delay import WsDelay
from chaosproxy.faults.ws_drop import WsDrop


@dataclass
class FakeMessage:
    """A MessageWire that records what the faults did."""

    content: bytes = b"hello"
    is_text: bool = True
    from_client: bool = True
    counts: dict[str, int] = field(default_factory=lambda: {"client": 1, "server": 0})
    seed: int = 0
    rule: str = "ws"
    ended: bool = False
    dropped: bool = False
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    _rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng

    def seen(self, direction: Direction) -> int:
        if direction == "both":
            return sum(self.counts.values())
        return self.counts[direction]

    def replace(self, content: bytes) -> None:
        self.content = content
        self.actions.append(("replace", content))

    def drop(self) -> None:
        self.dropped = True
        self.actions.append(("drop",))

    def delay(self, seconds: float) -> None:
        self.actions.append(("delay", seconds))

    def close(self, code: int, reason: str) -> None:
        self.ended = True
        self.actions.append(("close", code, reason))


def test_ws_drop_drops_the_share_its_probability_says() -> None:
    fault = WsDrop(probability=0.3)
    dropped = 0
    for seed in range(2000):
        wire = FakeMessage(seed=seed)
        fault.on_message(wire)
        dropped += wire.dropped
    assert 500 < dropped < 700
    never, always = FakeMessage(), FakeMessage()
    WsDrop(probability=0).on_message(never)
    WsDrop(probability=1).on_message(always)
    assert never.actions == [] and always.actions == [("drop",)]


def test_ws_delay_holds_within_the_jitter() -> None:
    waits = []
    for seed in range(200):
        wire = FakeMessage(seed=seed)
        WsDelay(delay="200ms", jitter="50ms").on_message(wire)
        [(action, seconds)] = wire.actions
        assert action == "delay"
        waits.append(seconds)
    assert 0.15 <= min(waits) < 0.16 and 0.24 < max(waits) <= 0.25
    wire = FakeMessage()
    WsDelay(delay=1.5).on_message(wire)
    assert wire.actions == [("delay", 1.5)]


def test_ws_corrupt_keeps_text_valid_utf8_and_the_length() -> None:
    text = "grüße, 世界 and more".encode()
    for seed in range(100):
        wire = FakeMessage(content=text, seed=seed)
        WsCorrupt(changes=3).on_message(wire)
        changed = wire.content.decode()  # still valid UTF-8
        original = text.decode()
        assert len(changed) == len(original)
        assert sum(a != b for a, b in zip(changed, original, strict=True)) == 3


def test_ws_corrupt_flips_bytes_of_a_binary_message_and_leaves_an_empty_one() -> None:
    data = bytes(range(32))
    wire = FakeMessage(content=data, is_text=False, seed=4)
    WsCorrupt(changes=2).on_message(wire)
    assert (
        len(wire.content) == 32
        and sum(a != b for a, b in zip(wire.content, data, strict=True)) == 2
    )
    empty = FakeMessage(content=b"", is_text=False)
    WsCorrupt().on_message(empty)
    assert empty.actions == []
    short = FakeMessage(content=b"ab")  # more changes asked than there are characters
    WsCorrupt(changes=5).on_message(short)
    assert short.content != b"ab" and len(short.content) == 2


def test_ws_corrupt_with_a_probability_leaves_some_messages_alone() -> None:
    changed = 0
    for seed in range(1000):
        wire = FakeMessage(seed=seed)
        WsCorrupt(probability=0.25).on_message(wire)
        changed += bool(wire.actions)
    assert 180 < changed < 320


def test_ws_close_after_messages_counts_its_direction() -> None:
    fault = WsClose(after_messages=3, direction="server", code=4000, reason="bye")
    wire = FakeMessage(counts={"client": 10, "server": 2})
    fault.on_message(wire)
    assert wire.actions == []
    wire = FakeMessage(counts={"client": 0, "server": 3})
    fault.on_message(wire)
    assert wire.actions == [("close", 4000, "bye")]
    both = WsClose(after_messages=3)  # direction both: all messages count
    wire = FakeMessage(counts={"client": 2, "server": 1})
    both.on_message(wire)
    assert wire.actions == [("close", 1011, "")]


def test_ws_close_on_time_has_a_timer_and_closes_when_it_fires() -> None:
    fault = WsClose(after="2s", code=1001)
    assert fault.timer() == 2.0 and WsClose(after_messages=1).timer() is None
    wire = FakeMessage()
    fault.on_timer(wire)
    assert wire.actions == [("close", 1001, "")]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"type": "ws_drop"}, "missing required key 'probability'"),
        ({"type": "ws_drop", "probability": 1.5}, "must be between 0 and 1"),
        ({"type": "ws_drop", "probability": 1, "direction": "up"}, "'client', 'server' or 'both'"),
        ({"type": "ws_delay", "delay": "1s", "jitter": "2s"}, "must not exceed delay"),
        ({"type": "ws_delay", "delay": "11m"}, "set allow_long: true"),
        ({"type": "ws_corrupt", "changes": 0}, "must be at least 1"),
        ({"type": "ws_close"}, "give after_messages"),
        ({"type": "ws_close", "after": 1, "code": 1005}, "not a close code an endpoint may send"),
        ({"type": "ws_close", "after": 1, "code": 999}, "not a close code an endpoint may send"),
        ({"type": "ws_close", "after": 1, "reason": "é" * 62}, "at most 123 bytes"),
        ({"type": "ws_close", "after_messages": 0}, "must be at least 1"),
    ],
)
def test_bad_ws_faults_are_refused_with_a_located_reason(fault: dict, message: str) -> None:
    import json

    text = json.dumps({"rules": [{"match": {"path": "/ws"}, "fault": fault}]})
    with pytest.raises(ScenarioError) as err:
        load_text(text, "bad.yaml")
    assert message in str(err.value), str(err.value)
    assert "rules[0].fault" in str(err.value)


def test_every_ws_type_is_a_message_fault_that_does_nothing_to_the_upgrade_request() -> None:
    import asyncio

    for fault in (WsDrop(probability=1), WsDelay(delay=1), WsCorrupt(), WsClose(after=1)):
        assert isinstance(fault, MessageFault)
        asyncio.run(fault.apply(None))  # type: ignore[arg-type]
        assert fault.applies_to(True) and fault.applies_to(False)
    assert WsDrop(probability=1, direction="client").applies_to(True)
    assert not WsDrop(probability=1, direction="client").applies_to(False)
    assert WsDrop(probability=1, direction="server").applies_to(False)


UPGRADE = [("Connection", "Upgrade"), ("Upgrade", "websocket")]


def test_a_ws_rule_matches_upgrades_only_and_explain_says_why_not() -> None:
    scenario = load_text(
        """
rules:
  - name: flaky-socket
    match: {path: /ws}
    fault: {type: ws_drop, probability: 0.1}
  - name: plain
    match: {path: /ws}
    fault: {type: error, status: 503}
"""
    )
    engine = Engine(scenario, seed=1)
    plain = SimpleRequest("GET", "h", "/ws")
    upgrade = SimpleRequest("GET", "h", "/ws", headers=UPGRADE)
    verdicts = engine.explain(plain)
    assert not verdicts[0].fires
    assert verdicts[0].reason == (
        "does not match: it is not a WebSocket upgrade (its ws_* faults act on WebSocket messages)"
    )
    assert verdicts[1].fires
    decision = engine.decide(upgrade)
    assert decision is not None and decision.name == "flaky-socket"
    assert engine.decide(plain).name == "plain"  # type: ignore[union-attr]
    stats = {r["name"]: r["seen"] for r in engine.stats()["rules"]}
    assert stats == {"flaky-socket": 1, "plain": 1}


def test_each_direction_has_its_own_seeded_stream() -> None:
    scenario = load_text("rules: [{fault: {type: ws_drop, probability: 0.5}}]")
    upgrade = SimpleRequest("GET", "h", "/", headers=UPGRADE)
    first = Engine(scenario, seed=5).decide(upgrade)
    again = Engine(scenario, seed=5).decide(upgrade)
    other = Engine(scenario, seed=6).decide(upgrade)
    assert first is not None and again is not None and other is not None
    draws = [first.rng_for("ws:client").random() for _ in range(1)]
    assert draws == [again.rng_for("ws:client").random()]
    assert first.rng_for("ws:client").random() != first.rng_for("ws:server").random()
    assert first.rng_for("ws:client").random() != other.rng_for("ws:client").random()


def _socket_record(**ws: Any) -> DecisionRecord:
    return DecisionRecord(
        seq=1,
        time=0.0,
        monotonic=0.0,
        duration=1.0,
        method="GET",
        url="http://h/ws",
        host="h",
        path="/ws",
        request_key="k",
        rule="sock",
        faults=("ws_drop", "ws_close"),
        fault="ws_drop 50% + ws_close 4000 after 3 messages",
        phase=None,
        outcome="response",
        status=101,
        upstream_status=101,
        websocket={
            "client": {"seen": 4, "dropped": 2, "delayed": 0, "corrupted": 0},
            "server": {"seen": 2, "dropped": 0, "delayed": 1, "corrupted": 0},
            "close_code": 4000,
            "closed_by": "proxy",
            **ws,
        },
    )


def test_a_socket_record_round_trips_and_feeds_the_websocket_metrics() -> None:
    record = _socket_record()
    assert DecisionRecord.from_dict(record.to_dict()) == record
    assert '"websocket":{"client":{"seen":4' in record.to_json()
    metrics = Metrics()
    metrics(record)
    metrics(_socket_record(closed_by="client", close_code=1000))
    text = metrics.render({"scenario": "s", "seed": 1})
    assert (
        'chaosproxy_websocket_messages_total{rule="sock",direction="client",action="dropped"} 4'
        in text
    )
    assert (
        'chaosproxy_websocket_messages_total{rule="sock",direction="server",action="delayed"} 2'
        in text
    )
    assert 'action="corrupted"' not in text  # zero counts are not samples
    assert 'chaosproxy_websocket_closes_total{rule="sock",code="4000"} 1' in text
    assert 'code="1000"' not in text  # the client closed that one: not the proxy's doing
