"""The shared state's pure parts: ``--state`` URLs, the script's arguments and replies,
and how a replica takes changes in epoch order (no Redis needed)."""

from __future__ import annotations

from typing import Any

import pytest

from chaosproxy.core.engine import Engine, SimpleRequest, draw
from chaosproxy.core.scenario import load_text
from chaosproxy.state import MemoryState, StateError, open_state, parse_url
from chaosproxy.state.selection import (
    DRAW_WINDOW,
    ROW,
    NeedDraws,
    Outcome,
    arguments,
    candidates,
    decision_of,
    read_reply,
)
from chaosproxy.state.shared import RedisState, made_alone


@pytest.mark.parametrize(
    ("text", "host", "port", "db"),
    [
        ("redis://127.0.0.1:6380/2", "127.0.0.1", 6380, 2),
        ("redis://redis", "redis", 6379, 0),
        ("redis://:secret@cache:7000/", "cache", 7000, 0),
    ],
)
def test_redis_urls(text: str, host: str, port: int, db: int) -> None:
    url = parse_url(text)
    assert url is not None and (url.host, url.port, url.db) == (host, port, db)
    assert "secret" not in url.safe
    assert url.timeout == 0.05


def test_the_decision_timeout_can_be_given_in_the_url() -> None:
    url = parse_url("redis://127.0.0.1:6379/1?timeout=250ms")
    assert url is not None and url.timeout == 0.25 and url.db == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://127.0.0.1:6379", "give memory or redis://HOST:PORT/DB"),
        ("redis://127.0.0.1:99999/0", "out of range"),
        ("redis:///0", "no host"),
        ("redis://h:6379/zero", "the database is a number"),
        ("redis://h/0?timeout=0", "timeout must be above 0"),
        ("redis://h/0?timeout=1m", "at most 5s"),
        ("redis://h/0?timeout=soon", "timeout: "),
        ("redis://h/0?retries=3", "unknown option 'retries'"),
    ],
)
def test_bad_state_urls(text: str, message: str) -> None:
    with pytest.raises(StateError, match=message):
        parse_url(text)


def test_memory_is_the_default_and_decides_as_the_engine() -> None:
    scenario = load_text("rules: [{every: 2, fault: {type: error, status: 500}}]")
    engine, twin = Engine(scenario, seed=1), Engine(scenario, seed=1)
    for spec in (None, "", "memory"):
        assert isinstance(open_state(spec, engine), MemoryState)
    state = open_state(None, engine)
    req = SimpleRequest("GET", "h", "/x")
    for _ in range(6):
        ours, theirs = state.decide(req), twin.decide(req)
        assert (ours and ours.match_number) == (theirs and theirs.match_number)
    assert state.health() == {"backend": "memory", "status": "ok"}


SCENARIO = """
name: mixed
rules:
  - {name: a, match: {path: /x}, skip: 1, every: 2, times: 3, probability: 0.5,
     fault: {type: error, status: 500}}
  - {name: b, match: {path: /x}, per_request: {times: 2}, probability: 0.9,
     fault: {type: error, status: 502}}
  - {name: c, match: {path: /x}, sticky: header:X-User, probability: 0.5,
     fault: {type: error, status: 503}}
  - {name: d, match: {path: /x}, fault: {type: rate_limit, limit: 2, per: 1.5s,
     key: header:X-Api-Key}}
  - {name: other, match: {path: /y}, fault: {type: error, status: 500}}
"""


def test_arguments_carry_each_step_of_each_matching_rule() -> None:
    engine = Engine(load_text(SCENARIO), seed=9)
    req = SimpleRequest("GET", "h", "/x", headers=[("X-User", "ann"), ("X-Api-Key", "k1")])
    matched = engine.matching(req)
    assert [i for i, _ in matched] == [0, 1, 2, 3]  # /y's rule is not sent
    cands = candidates(matched, req)
    args = arguments(cands, 9, req)
    assert args[0] == 4 and len(args) == 1 + 4 * ROW
    rows = [args[1 + i * ROW : 1 + (i + 1) * ROW] for i in range(4)]
    a, b, c, d = rows
    assert a[:5] == [0, 1, 2, 3, 0] and a[6] == 1 and a[7] == 1
    expected = "".join("1" if draw(9, None, "a", n) < 0.5 else "0" for n in range(1, 33))
    assert a[8] == expected and len(expected) == DRAW_WINDOW
    assert b[4] == 2 and b[5] == cands[1].identity and b[6] == 2 and b[8] in ("0", "1")
    assert c[6] == 2 and cands[2].sticky == "ann"
    assert d[9:] == [2, 1500.0, "k1"]


def test_replies_name_the_tried_rules_and_the_one_that_fired() -> None:
    engine = Engine(load_text(SCENARIO), seed=9)
    req = SimpleRequest("GET", "h", "/x", headers=[("X-Api-Key", "k1")])
    cands = candidates(engine.matching(req), req)
    outcome = read_reply(cands, [b"ok", 4, -1, 2, 1, 0, 1, 0, 1, 0, 7, 3])
    assert isinstance(outcome, Outcome) and outcome.fired and outcome.retry_after == 2
    assert [(c.index, s, i) for c, s, i in outcome.tried] == [
        (0, 1, 0),
        (1, 1, 0),
        (2, 1, 0),
        (3, 7, 3),
    ]
    decision = decision_of(outcome, 9)
    assert decision is not None and decision.name == "d" and decision.match_number == 7
    assert decision.retry_after == 2
    none = read_reply(cands[:1], [b"ok", 0, -1, -1, 5, 0])
    assert isinstance(none, Outcome) and decision_of(none, 9) is None
    again = read_reply(cands, [b"draw", 1, 40])
    assert again == NeedDraws(0, 40)


def _body(replica: str, token: str, scenario: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "origin": replica, "token": token, "kind": "apply", "scenario": scenario,
        "source": "PUT /scenario", "seed": "77", "seed_source": "apply", "paused": False,
        "phase": 0, "started": "100.5", "expires": None,
    }  # fmt: skip
    body.update(extra)
    return body


def test_a_replica_applies_changes_newer_than_its_own_only() -> None:
    url = parse_url("redis://127.0.0.1:1/0")
    assert url is not None
    engine = Engine(load_text("name: start\nrules: []"), seed=1)
    state = RedisState(url, engine)
    first = {"name": "first", "rules": [{"fault": {"type": "error", "status": 500}}]}
    older = {"name": "older", "rules": []}
    state._receive(3, 2, 3, 3, _body("other", "t1", first))
    assert engine.scenario.label == "first" and engine.seed == 77
    assert engine.seed_source == "apply" and state.epoch == 3
    state._receive(2, 1, 2, 2, _body("other", "t0", older))  # late: never goes back
    assert engine.scenario.label == "first" and state.epoch == 3
    state._receive(4, 2, 3, 3, _body("other", "t2", first, kind="pause", paused=True))
    assert engine.paused and engine.scenario.label == "first"
    # our own change, confirmed: only the numbers move
    state._mine.add("mine")
    state._receive(5, 3, 5, 5, _body(state.id, "mine", older))
    assert engine.scenario.label == "first" and state.version == 3
    # ours, but another replica's change was applied here meanwhile: applied again
    state._receive(7, 5, 7, 7, _body(state.id, "lost", older))
    assert engine.scenario.label == "older" and not engine.paused


def test_an_unstarted_replica_keeps_local_changes_for_later() -> None:
    url = parse_url("redis://127.0.0.1:1/0")
    assert url is not None
    engine = Engine(load_text("name: start\nrules: []"), seed=1)
    state = RedisState(url, engine)
    engine.pause()  # no loop yet: nothing to tell, joining shares it
    assert state.health()["status"] == "degraded" and state._mine == set()
    assert "chaosproxy_state_degraded 1" in state.metrics_text()


def test_every_valid_scenario_survives_the_trip_through_the_store() -> None:
    """What a replica stores (the scenario's document, as JSON) loads back to the same
    scenario: the shipped ones and the valid corpus (every fault type and option)."""
    import json
    from pathlib import Path

    from chaosproxy.core import scenario as scenario_mod

    corpus = Path(__file__).resolve().parents[1] / "core" / "corpus" / "valid"
    paths = [e.path for e in scenario_mod.shipped()] + sorted(corpus.glob("*.yaml"))
    assert len(paths) > 20
    for path in paths:
        original = scenario_mod.load_file(path)
        doc = scenario_mod.model_document(original)
        doc["name"] = original.label
        again = scenario_mod.load_data(json.loads(json.dumps(doc)), "shared state")
        assert again == original, path.name


def test_a_rejoining_replica_counts_its_decisions_alone_in_agreement() -> None:
    assert made_alone(1) == "1 decision was made with this replica's own state"
    assert made_alone(28) == "28 decisions were made with this replica's own state"
