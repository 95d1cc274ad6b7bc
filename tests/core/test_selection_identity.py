"""per_request (fail the first N attempts of each distinct request) and sticky (the
probability applies per key value): engine semantics, validation, explain."""

from __future__ import annotations

import pytest

from chaosproxy.core.engine import Engine, SimpleRequest, draw_for_key, request_identity
from chaosproxy.core.scenario import ScenarioError, load_data, load_text

ERR = {"type": "error", "status": 503}


def engine(*rules: dict, seed: int = 1) -> Engine:
    return Engine(load_data({"seed": seed, "rules": list(rules)}))


def get(path: str = "/v1/forecast/berlin", **kw: object) -> SimpleRequest:
    return SimpleRequest(method="GET", host="weather.example", path=path, **kw)  # type: ignore[arg-type]


def post(body: bytes, key: str | None = None) -> SimpleRequest:
    headers = [("Idempotency-Key", key)] if key else []
    return SimpleRequest("POST", "api.example", "/v1/orders", headers=headers, content=body)


def outcomes(e: Engine, requests: list[SimpleRequest]) -> list[bool]:
    return [e.decide(r) is not None for r in requests]


# --------------------------------------------------------------------------- identity


def test_identity_is_method_url_and_body_hash_or_the_idempotency_key() -> None:
    a = request_identity(post(b'{"n": 1}'))
    assert a.startswith("sha256:")
    assert a == request_identity(post(b'{"n": 1}'))
    assert a != request_identity(post(b'{"n": 2}'))
    assert request_identity(get(query_pairs=[("units", "metric")])) != request_identity(get())
    assert request_identity(get("/a")) != request_identity(get("/b"))
    keyed = [request_identity(post(body, key="order-7")) for body in (b"1", b"2")]
    assert keyed == ["idem:order-7"] * 2


# --------------------------------------------------------------------------- per_request


def test_per_request_fails_the_first_n_attempts_of_each_distinct_request() -> None:
    e = engine({"name": "r", "per_request": {"times": 2}, "fault": ERR})
    berlin, paris = get("/v1/forecast/berlin"), get("/v1/forecast/paris")
    seq = [berlin, berlin, paris, berlin, paris, paris, berlin]
    assert outcomes(e, seq) == [True, True, True, False, True, False, False]


def test_per_request_attempt_number_and_identity_are_in_the_decision() -> None:
    e = engine({"name": "r", "per_request": {"times": 3}, "fault": ERR})
    decisions = [e.decide(post(b"x", key="k1")) for _ in range(4)]
    assert [d.attempt if d else None for d in decisions] == [1, 2, 3, None]
    assert decisions[0] is not None and decisions[0].identity == "idem:k1"


def test_per_request_counts_restart_on_reset_and_apply() -> None:
    e = engine({"name": "r", "per_request": {"times": 1}, "fault": ERR})
    assert outcomes(e, [get(), get()]) == [True, False]
    e.reset()
    assert outcomes(e, [get(), get()]) == [True, False]
    e.apply(e.scenario)
    assert outcomes(e, [get()]) == [True]


def test_per_request_later_attempts_fall_through_to_later_rules() -> None:
    e = engine(
        {"name": "first-try", "per_request": {"times": 1}, "fault": ERR},
        {"name": "slow", "fault": {"type": "latency", "delay": "10ms"}},
    )
    names = [d.name if d else None for d in (e.decide(get()) for _ in range(3))]
    assert names == ["first-try", "slow", "slow"]


def test_per_request_with_probability_decides_once_per_request_not_per_attempt() -> None:
    e = engine({"name": "r", "per_request": {"times": 2}, "probability": 0.5, "fault": ERR})
    chosen = 0
    for i in range(200):
        r = get(f"/v1/forecast/city{i}")
        first = outcomes(e, [r, r, r])
        assert first in ([True, True, False], [False, False, False])
        chosen += first[0]
    assert 70 <= chosen <= 130  # about half the requests, each failing exactly twice


def test_per_request_times_caps_the_total_as_usual() -> None:
    e = engine({"name": "r", "per_request": {"times": 2}, "times": 3, "fault": ERR})
    a, b = get("/a"), get("/b")
    assert outcomes(e, [a, a, a, b, b]) == [True, True, False, True, False]


# --------------------------------------------------------------------------- sticky


def users(n: int) -> list[SimpleRequest]:
    return [get(headers=[("X-User-Id", f"user-{i}")]) for i in range(n)]


def test_sticky_gives_every_request_of_one_user_the_same_fate() -> None:
    e = engine({"name": "r", "sticky": "header:X-User-Id", "probability": 0.1, "fault": ERR})
    people = users(1000)
    first = outcomes(e, people)
    assert outcomes(e, people) == first  # the same users again: the same answer
    assert outcomes(e, list(reversed(people))) == list(reversed(first))  # order does not matter
    assert 60 <= sum(first) <= 140  # about 10 % of the users


def test_sticky_is_consistent_hashing_with_the_seed() -> None:
    def hit(seed: int, p: float) -> set[int]:
        e = engine(
            {"name": "r", "sticky": "header:X-User-Id", "probability": p, "fault": ERR},
            seed=seed,
        )
        return {i for i, fired in enumerate(outcomes(e, users(500))) if fired}

    assert hit(3, 0.1) == hit(3, 0.1)
    assert hit(3, 0.1) != hit(4, 0.1)
    assert hit(3, 0.1) <= hit(3, 0.3)  # raising the share only adds users
    for i in hit(3, 0.1):
        assert draw_for_key(3, None, "r", f"sticky\x1fuser-{i}") < 0.1


def test_sticky_by_query_parameter_and_requests_without_the_key_share_one_fate() -> None:
    e = engine({"name": "r", "sticky": "query:tenant", "probability": 0.5, "fault": ERR})
    tenants = [get(query_pairs=[("tenant", f"t{i}")]) for i in range(40)]
    first = outcomes(e, tenants)
    assert outcomes(e, tenants) == first and 0 < sum(first) < 40
    anonymous = outcomes(e, [get() for _ in range(10)])
    assert len(set(anonymous)) == 1


def test_explain_tells_per_request_and_sticky_reasons() -> None:
    e = engine(
        {"name": "once", "per_request": {"times": 1}, "match": {"path": "/a"}, "fault": ERR},
        {"name": "users", "sticky": "header:X-User-Id", "probability": 0.0001, "fault": ERR},
    )
    e.decide(get("/a"))
    verdicts = {v.rule: v for v in e.explain(get("/a", headers=[("X-User-Id", "u1")]))}
    assert "per_request: attempt 2 of GET http://weather.example/a" in verdicts["once"].reason
    assert "the draw for header:X-User-Id = 'u1' is" in verdicts["users"].reason
    assert e.stats()["requests"] == 1  # explain changed nothing


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("yaml_rule", "expected"),
    [
        (
            "{per_request: {times: 0}, fault: {type: error}}",
            "t.yaml:2:27: rules[0].per_request.times: must be a whole number >= 1, got 0",
        ),
        (
            "{per_request: {tims: 2}, fault: {type: error}}",
            "t.yaml:2:20: rules[0].per_request.tims: unknown key 'tims' (did you mean 'times'?); valid keys: times",
        ),
        (
            "{per_request: {times: 2}, every: 2, fault: {type: error}}",
            "t.yaml:2:38: rules[0].every: every does not combine with per_request (which counts attempts per distinct request)",
        ),
        (
            "{per_request: {times: 2}, fault: {type: rate_limit, limit: 1}}",
            "t.yaml:2:19: rules[0].per_request: per_request does not combine with a rate_limit fault",
        ),
        (
            "{sticky: 'cookie:id', probability: 0.1, fault: {type: error}}",
            "t.yaml:2:14: rules[0].sticky: 'cookie:id' is not a key: write header:NAME or query:NAME, e.g. header:X-User-Id",
        ),
    ],
)
def test_bad_per_request_and_sticky_are_located(yaml_rule: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_text(f"rules:\n  - {yaml_rule}\n", "t.yaml")
    assert expected in info.value.lines


def test_per_request_rules_read_the_body_before_deciding() -> None:
    e = engine({"name": "r", "per_request": {"times": 1}, "fault": ERR})
    assert e.decide_without_body(post(b"big")) == (False, None)  # identity needs the body
    assert e.stats()["requests"] == 0
    plain = engine({"name": "r", "match": {"path": "/elsewhere"}, "fault": ERR})
    assert plain.decide_without_body(post(b"big")) == (True, None)
