"""``explain`` and ``decide`` run one selection chain: over random scenarios and request
sequences, explain (asked first, on the same state) says a rule fires exactly when decide
then picks it, and asking it changes nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.scenario import load_data


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


MATCHES: list[dict[str, Any]] = [
    {},
    {"path": "/a"},
    {"path": "/a*"},
    {"method": "POST"},
    {"headers": {"X-User": "u1"}},
]


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"match": draw(st.sampled_from(MATCHES))}
    per_request = draw(st.booleans())
    limited = not per_request and draw(st.booleans())
    if per_request:
        rule["per_request"] = {"times": draw(st.integers(1, 3))}
    else:
        rule["skip"] = draw(st.integers(0, 3))
        every = draw(st.integers(0, 3))
        if every:
            rule["every"] = every
    times = draw(st.none() | st.integers(0, 4))
    if times is not None:
        rule["times"] = times
    rule["probability"] = draw(st.sampled_from([1, 1, 0.7, 0.4, 0.1, 0]))
    if draw(st.integers(0, 3)) == 0:
        rule["sticky"] = draw(st.sampled_from(["header:X-User", "query:user"]))
    if limited:
        limit: dict[str, Any] = {"type": "rate_limit", "limit": draw(st.integers(1, 3))}
        limit["per"] = draw(st.sampled_from(["1s", "2s", "10s"]))
        if draw(st.booleans()):
            limit["key"] = "header:X-Key"
        rule["fault"] = limit
    else:
        rule["fault"] = {"type": "error", "status": 503}
    return rule


@st.composite
def requests(draw: st.DrawFn) -> tuple[SimpleRequest, float, bool]:
    headers = []
    user = draw(st.sampled_from([None, "u1", "u2"]))
    if user is not None:
        headers.append(("X-User", user))
    key = draw(st.sampled_from([None, "k1", "k2"]))
    if key is not None:
        headers.append(("X-Key", key))
    idem = draw(st.sampled_from([None, None, "i1", "i2"]))
    if idem is not None:
        headers.append(("Idempotency-Key", idem))
    req = SimpleRequest(
        method=draw(st.sampled_from(["GET", "POST"])),
        host="api.example",
        path=draw(st.sampled_from(["/a", "/ab", "/b"])),
        headers=headers,
        query_pairs=[("user", user)] if user is not None and draw(st.booleans()) else [],
        content=draw(st.sampled_from([b"", b"x"])),
    )
    elapsed = draw(st.sampled_from([0.0, 0.0, 0.4, 1.0, 2.5]))
    paused = draw(st.integers(0, 9)) == 0
    return req, elapsed, paused


SETTINGS = settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def named(rule_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(rule, name=f"r{i}") for i, rule in enumerate(rule_list)]


def agree(
    engine: Engine, clock: FakeClock, sequence: list[tuple[SimpleRequest, float, bool]]
) -> None:
    """Ask explain (twice) then decide for each request; they must agree."""
    for req, elapsed, paused in sequence:
        clock.now += elapsed
        if paused:
            engine.pause()
        else:
            engine.resume()
        verdicts = engine.explain(req)
        stats = engine.stats()
        firing = [v.rule for v in verdicts if v.fires]
        assert len(firing) <= 1
        assert engine.explain(req) == verdicts  # explain is a dry run: asking again agrees
        assert engine.stats() == stats
        decision = engine.decide(req)
        assert (decision.name if decision else None) == (firing[0] if firing else None)
        if decision is not None:
            assert decision.phase == verdicts[0].phase


@SETTINGS
@given(
    rule_list=st.lists(rules(), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    sequence=st.lists(requests(), min_size=1, max_size=20),
)
def test_explain_says_a_rule_fires_exactly_when_decide_picks_it(
    rule_list: list[dict[str, Any]], seed: int, sequence: list[tuple[SimpleRequest, float, bool]]
) -> None:
    clock = FakeClock()
    engine = Engine(load_data({"seed": seed, "rules": named(rule_list)}), clock=clock)
    agree(engine, clock, sequence)


@st.composite
def timelines(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    loop = draw(st.booleans())
    phases = []
    for i in range(count):
        phase: dict[str, Any] = {
            "name": f"p{i}",
            "rules": named(draw(st.lists(rules(), max_size=3))),
        }
        if i < count - 1 or loop or draw(st.booleans()):
            phase["duration"] = draw(st.sampled_from(["1s", "2s", "3s"]))
        phases.append(phase)
    doc: dict[str, Any] = {"phases": phases, "loop": loop}
    if draw(st.integers(0, 3)) == 0:
        doc["ttl"] = draw(st.sampled_from(["4s", "8s"]))
    return doc


@SETTINGS
@given(
    timeline=timelines(),
    seed=st.integers(0, 2**31 - 1),
    sequence=st.lists(requests(), min_size=1, max_size=20),
)
def test_with_phases_and_a_ttl_explain_and_decide_see_the_same_phase(
    timeline: dict[str, Any], seed: int, sequence: list[tuple[SimpleRequest, float, bool]]
) -> None:
    clock = FakeClock()
    engine = Engine(load_data({"seed": seed, **timeline}), clock=clock)
    engine.start()
    agree(engine, clock, sequence)
