"""The resilience oracle on hand-made traffic: each expectation passes on a client that
behaves and fails, explaining itself, on one that does not."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chaosproxy.testing.oracle import Calls, ResilienceError

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Rec:
    time: float
    method: str = "GET"
    url: str = "http://up/v1/forecast/berlin"
    request_key: str = "k-berlin"
    rule: str | None = None
    outcome: str = "response"
    status: int | None = 200
    duration: float = 0.01
    retry_after: float | None = None


def fail(t: float, **kw: object) -> Rec:
    return Rec(T0 + t, rule="unavailable", status=503, **kw)  # type: ignore[arg-type]


def ok(t: float, **kw: object) -> Rec:
    return Rec(T0 + t, **kw)  # type: ignore[arg-type]


def retried(key: str, starts: list[float], url: str = "http://up/x") -> list[Rec]:
    """A request tried at ``starts`` (seconds from T0): all fail but the last."""
    out = [fail(t, request_key=key, url=url) for t in starts[:-1]]
    return [*out, ok(starts[-1], request_key=key, url=url)]


# --------------------------------------------------------------------------- attempts


def test_attempts_per_logical_request() -> None:
    calls = Calls(retried("a", [0, 0.1, 0.3]) + retried("b", [1, 1.1, 1.3]))
    assert calls.expect_attempts(3) == {"a": 3, "b": 3}
    calls.expect_attempts(at_least=2, at_most=3)


def test_attempts_failure_names_the_request_and_shows_its_timeline() -> None:
    calls = Calls(retried("a", [0, 0.1, 0.3]) + retried("b", [1, 1.1], url="http://up/b"))
    with pytest.raises(ResilienceError) as info:
        calls.expect_attempts(3)
    text = str(info.value)
    assert "expected: 3 attempts per logical request" in text
    assert "seen:     2 attempts of GET http://up/b (b)" in text
    assert "(+  1.000s) GET http://up/b -> 503 in 10ms [rule unavailable]" in text
    assert "(+  1.100s) GET http://up/b -> 200 in 10ms [passed through]" in text


def test_no_traffic_at_all_is_a_failure_not_a_pass() -> None:
    with pytest.raises(ResilienceError, match="no requests at all"):
        Calls([]).expect_attempts(1)


# --------------------------------------------------------------------------- backoff


def test_backoff_growing_bounded_and_jittered() -> None:
    calls = Calls(retried("a", [0, 0.11, 0.33, 0.75]) + retried("b", [2, 2.13, 2.36, 2.79]))
    gaps = calls.expect_backoff(min_delay=0.09, max_delay=0.5, growing=True, jittered=True)
    assert [round(g, 2) for g in gaps["a"]] == [0.1, 0.21, 0.41]


@pytest.mark.parametrize(
    ("starts_a", "starts_b", "kwargs", "message"),
    [
        ([0, 0.02, 0.1], [1, 1.03, 1.1], {"min_delay": 0.1}, "each retry to wait at least 100ms"),
        ([0, 1.5, 3.0], [5, 6.6, 8], {"max_delay": 1.0}, "each retry to wait at most 1.00s"),
        ([0, 0.41, 0.52], [1, 1.41, 1.52], {"growing": True}, "growing waits between retries"),
        (
            [0, 0.21, 0.42],
            [1, 1.21, 1.42],
            {"jittered": True},
            "jittered waits (retries of different requests wait different times)",
        ),
    ],
)
def test_backoff_violations_explain_themselves(
    starts_a: list[float], starts_b: list[float], kwargs: dict, message: str
) -> None:
    calls = Calls(retried("a", starts_a) + retried("b", starts_b))
    with pytest.raises(ResilienceError) as info:
        calls.expect_backoff(tolerance=0.01, **kwargs)
    assert f"expected: {message}" in str(info.value)


def test_backoff_needs_retries() -> None:
    with pytest.raises(ResilienceError, match="no logical request was retried"):
        Calls([ok(0), ok(1, request_key="other")]).expect_backoff(min_delay=0)


# --------------------------------------------------------------------------- Retry-After


def test_retry_after_honoured_from_the_record_or_a_given_value() -> None:
    honoured = [fail(0, retry_after=1), ok(1.05)]
    assert Calls(honoured).expect_retry_after() == 1
    assert Calls(honoured).expect_retry_after(slack=0.5) == 1
    unrecorded = [fail(0), ok(2.05)]
    assert Calls(unrecorded).expect_retry_after(seconds=2) == 1


def test_retry_after_too_soon_or_too_late() -> None:
    with pytest.raises(ResilienceError) as info:
        Calls([fail(0, retry_after=2), ok(0.5)]).expect_retry_after()
    assert "expected: a retry no sooner than Retry-After (2.00s)" in str(info.value)
    assert "retried 490ms after the answer" in str(info.value)
    with pytest.raises(ResilienceError, match="within 500ms of Retry-After"):
        Calls([fail(0, retry_after=1), ok(3)]).expect_retry_after(slack=0.5)
    with pytest.raises(ResilienceError, match="no such answer was retried"):
        Calls([ok(0)]).expect_retry_after()


# --------------------------------------------------------------------------- idempotency


def test_non_idempotent_retries_are_flagged_unless_allowed_or_keyed() -> None:
    post = [
        fail(0, method="POST", request_key="sha256:1"),
        ok(0.2, method="POST", request_key="sha256:1"),
    ]
    with pytest.raises(ResilienceError) as info:
        Calls(post).expect_no_retry_of_non_idempotent()
    assert "POST http://up/v1/forecast/berlin sent 2 times" in str(info.value)
    Calls(post).expect_no_retry_of_non_idempotent(allow=["POST"])
    keyed = [
        fail(0, method="POST", request_key="idem:o-1"),
        ok(0.2, method="POST", request_key="idem:o-1"),
    ]
    Calls(keyed).expect_no_retry_of_non_idempotent()
    Calls(retried("g", [0, 0.1])).expect_no_retry_of_non_idempotent()  # GET may be retried


# --------------------------------------------------------------------------- breaker


def traffic(spec: list[tuple[float, bool]]) -> Calls:
    """(time, ok?) pairs as distinct requests."""
    return Calls(
        [(ok if good else fail)(t, request_key=f"k{i}") for i, (t, good) in enumerate(spec)]
    )


def test_breaker_closed_open_half_open_closed_inferred() -> None:
    spec = [(0.0, True)] + [(0.1 * i, False) for i in range(1, 6)]  # 5 failures by 0.5s
    spec += [(1.6, False)]  # probe after reset_timeout 1s: fails, opens again
    spec += [(2.7, True), (2.8, True), (2.9, True)]  # probe succeeds, traffic resumes
    events = traffic(spec).expect_breaker(
        fail_max=5, reset_timeout=1.0, states=["closed", "open", "half-open", "closed"]
    )
    assert [e.state for e in events] == [
        "closed",
        "open",
        "half-open",
        "open",
        "half-open",
        "closed",
    ]


def test_breaker_that_never_opens_is_caught() -> None:
    spec = [(0.05 * i, False) for i in range(10)]
    with pytest.raises(ResilienceError) as info:
        traffic(spec).expect_breaker(fail_max=5, reset_timeout=1.0)
    text = str(info.value)
    assert "expected: no calls for 1.00s while the breaker is open" in text
    assert "seen:     a call 40ms after it opened" in text


def test_breaker_with_two_probes_at_once_is_caught() -> None:
    calls = [fail(0.1 * i, request_key=f"k{i}") for i in range(5)]
    calls += [ok(1.5, request_key="p1", duration=0.3), ok(1.6, request_key="p2")]
    with pytest.raises(ResilienceError, match="a single probe while the breaker is half-open"):
        Calls(calls).expect_breaker(fail_max=5, reset_timeout=1.0)


def test_breaker_states_in_order_or_explained() -> None:
    spec = [(0.1 * i, False) for i in range(5)]
    with pytest.raises(ResilienceError) as info:
        traffic(spec).expect_breaker(
            fail_max=5, reset_timeout=1.0, states=["closed", "open", "half-open", "closed"]
        )
    assert "seen:     closed at" in str(info.value) and "open at" in str(info.value)


def test_breaker_opened_after_n_failures() -> None:
    spec = [(0.1 * i, False) for i in range(5)] + [(3.0, True)]
    opened = traffic(spec).expect_breaker_opened(fail_max=5, within=2.0)
    assert opened == pytest.approx(T0 + 0.41)
    with pytest.raises(ResilienceError, match="at most 3 in a row"):
        traffic([(0, False)] * 3).expect_breaker_opened(fail_max=5)
    with pytest.raises(ResilienceError, match="1 more call"):
        traffic(spec).expect_breaker_opened(fail_max=5, within=5.0)


def test_a_success_ends_a_logical_request_so_asking_again_is_a_new_one() -> None:
    again = retried("a", [0, 0.1]) + [ok(1.0, request_key="a")] + retried("a", [2, 2.1, 2.3])
    calls = Calls(again)
    assert calls.attempts() == {"a": 2, "a#2": 1, "a#3": 3}
    with pytest.raises(ResilienceError) as info:
        calls.expect_attempts(at_least=2)
    assert "expected: at least 2 attempts per logical request" in str(info.value)
    assert "seen:     1 attempt of GET http://up/v1/forecast/berlin (a#2)" in str(info.value)


def test_during_selects_the_calls_of_one_operation() -> None:
    calls = Calls(retried("a", [0, 0.1, 0.3]) + retried("a", [2, 2.1]))
    assert calls.attempts() == {"a": 3, "a#2": 2}
    assert len(calls.during(T0 + 1.9, T0 + 3)) == 2
    calls.during(T0 + 1.9, T0 + 3).expect_attempts(2)


def test_retry_after_with_a_cap() -> None:
    capped = [fail(0, retry_after=5), ok(2.05)]
    Calls(capped).expect_retry_after(cap=2, slack=0.5)
    with pytest.raises(ResilienceError, match=r"no sooner than Retry-After \(5.00s\)"):
        Calls(capped).expect_retry_after()
    with pytest.raises(ResilienceError, match=r"no sooner than Retry-After \(2.00s\)"):
        Calls([fail(0, retry_after=5), ok(1)]).expect_retry_after(cap=2)


def test_records_from_a_decision_log_file() -> None:
    from chaosproxy.core.decisions import DecisionRecord, read_json_lines

    def record(seq: int, t: float, status: int, rule: str | None) -> DecisionRecord:
        return DecisionRecord(
            seq=seq, time=T0 + t, monotonic=t, duration=0.01, method="GET",
            url="http://up/a", host="up", path="/a", request_key="sha256:aa", rule=rule,
            faults=("error",) if rule else (), fault="error 503" if rule else None,
            phase=None, outcome="response", status=status, upstream_status=None,
            retry_after=1.0 if rule else None,
        )  # fmt: skip

    lines = [record(1, 0, 503, "r").to_json(), record(2, 1.2, 200, None).to_json()]
    calls = Calls(read_json_lines(lines))
    calls.expect_attempts(2)
    assert calls.expect_retry_after(slack=0.5) == 1
