"""Inference from synthetic attempt records: attempts, backoff, Retry-After, timeout, breaker."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from chaosproxy.testing.assess import infer
from chaosproxy.testing.assess.model import Attempt, ExperimentResult, Outcome, Sample


def attempts_with(waits: Sequence[float], status: int = 503, took: float = 0.002) -> list[Attempt]:
    """Attempts separated by ``waits`` (each attempt takes ``took``)."""
    out, t = [], 0.01
    for i in range(len(waits) + 1):
        out.append(Attempt(round(t, 6), "GET", "/v1/x", status, "error 503", took))
        if i < len(waits):
            t += took + waits[i]
    return out


def sample(
    waits: Sequence[float], status: int | None = 503, index: int = 0, **kw: object
) -> Sample:
    app = Outcome(status=status, duration_s=sum(waits) + 0.01, **kw)  # type: ignore[arg-type]
    return Sample(index, app, attempts_with(waits))


def test_gaps_run_from_the_end_of_one_attempt_to_the_next() -> None:
    a = [
        Attempt(0.0, "GET", "/", 503, None, 0.5),
        Attempt(0.7, "GET", "/", 503, None, 0.1),
        Attempt(1.2, "GET", "/", 200, None, 0.1),
    ]
    assert infer.gaps(a) == pytest.approx([0.2, 0.4])
    assert infer.gaps(a[:1]) == []


def test_primary_keeps_the_main_request_only() -> None:
    s = Sample(
        0,
        Outcome(),
        [
            Attempt(0.0, "GET", "/a", 503, None, 0.0),
            Attempt(0.1, "GET", "/metrics", 200, None, 0.0),
            Attempt(0.2, "GET", "/a", 200, None, 0.0),
        ],
    )
    assert [a.t_s for a in infer.primary(s)] == [0.0, 0.2]


@pytest.mark.parametrize(
    ("counts", "value", "confidence"),
    [([3, 3, 3], 3, "high"), ([3, 3, 2], 3, "medium"), ([1], 1, "medium"), ([], None, "low")],
)
def test_attempts_are_the_most_common_count(
    counts: list[int], value: int | None, confidence: str
) -> None:
    got, ev = infer.infer_attempts(counts)
    assert got == value
    assert ev.confidence == confidence


def test_zero_retries_is_no_backoff() -> None:
    fit = infer.infer_backoff([[], [], []])
    assert fit.backoff.kind == "none"
    assert fit.backoff.base_s is None
    assert "no retries" in fit.evidence.note


def test_immediate_retries_are_kind_none() -> None:
    fit = infer.infer_backoff([[0.001, 0.002, 0.001]] * 3)
    assert (fit.backoff.kind, fit.backoff.base_s) == ("none", 0.0)


def test_exponential_without_jitter() -> None:
    waits = [0.1, 0.2, 0.4, 0.8]
    fit = infer.infer_backoff([[w + 0.003 * i for w in waits] for i in range(3)])
    b = fit.backoff
    assert b.kind == "exponential"
    assert b.jitter is False
    assert b.base_s == pytest.approx(0.1, rel=0.1)
    assert b.multiplier == pytest.approx(2.0, rel=0.1)
    assert b.cap_s is None
    assert fit.evidence.confidence == "high"


def test_one_sample_gives_the_shape_but_not_jitter() -> None:
    fit = infer.infer_backoff([[0.1, 0.3, 0.9]])
    assert fit.backoff.kind == "exponential"
    assert fit.backoff.multiplier == pytest.approx(3.0, rel=0.05)
    assert fit.backoff.jitter is None
    assert fit.evidence.confidence != "high"


def test_jittered_exponential() -> None:
    rng = random.Random(4)
    base, jitter = 0.1, 0.1  # tenacity wait_exponential_jitter style: + uniform(0, jitter)
    runs = [[base * 2**k + rng.uniform(0, jitter) for k in range(4)] for _ in range(6)]
    fit = infer.infer_backoff(runs)
    b = fit.backoff
    assert (b.kind, b.jitter) == ("exponential", True)
    assert b.base_s == pytest.approx(base, rel=0.3)
    assert b.multiplier == pytest.approx(2.0, rel=0.25)


def test_capped_exponential() -> None:
    runs = [[0.1, 0.2, 0.4, 0.5, 0.5, 0.5]] * 3
    b = infer.infer_backoff(runs).backoff
    assert b.kind == "exponential"
    assert b.cap_s == pytest.approx(0.5, rel=0.05)
    assert b.base_s == pytest.approx(0.1, rel=0.1)
    assert b.multiplier == pytest.approx(2.0, rel=0.1)


def test_constant() -> None:
    b = infer.infer_backoff([[0.2, 0.21, 0.2]] * 3).backoff
    assert (b.kind, b.multiplier) == ("constant", None)
    assert b.base_s == pytest.approx(0.2, rel=0.05)


def test_linear() -> None:
    b = infer.infer_backoff([[0.1, 0.2, 0.3, 0.4, 0.5]] * 2).backoff
    assert b.kind == "linear"
    assert b.base_s == pytest.approx(0.1, abs=0.01)
    assert b.increment_s == pytest.approx(0.1, abs=0.01)


def test_an_immediate_first_retry_then_exponential_is_urllib3s_backoff_factor() -> None:
    b = infer.infer_backoff([[0.0, 0.2, 0.4, 0.8]] * 3).backoff
    assert b.first_immediate
    assert b.kind == "exponential"
    assert b.base_s == pytest.approx(0.2, rel=0.1)
    assert b.multiplier == pytest.approx(2.0, rel=0.1)


def test_one_wait_is_a_constant_of_low_confidence() -> None:
    fit = infer.infer_backoff([[0.3], [0.3]])
    assert (fit.backoff.kind, fit.evidence.confidence) == ("constant", "low")


@pytest.mark.parametrize(
    ("wait", "asked", "ignored", "expected"),
    [
        (1.01, 1.0, 0.1, (True, None)),
        (0.11, 1.0, 0.1, (False, None)),
        (2.0, 4.0, 0.1, (True, 2.0)),
        (None, 1.0, 0.1, (None, None)),
    ],
)
def test_retry_after(
    wait: float | None, asked: float, ignored: float, expected: tuple[object, object]
) -> None:
    honoured, cap, note = infer.infer_retry_after(wait, asked, ignored)
    assert (honoured, cap) == expected
    assert note


def test_timeout_is_when_the_client_gave_up() -> None:
    hung = [
        Attempt(0.0, "GET", "/", None, "timeout", 1.0, outcome="client_disconnected"),
        Attempt(1.1, "GET", "/", None, "timeout", 1.01, outcome="client_disconnected"),
    ]
    value, ev = infer.infer_timeout(hung, cap_s=10)
    assert value == pytest.approx(1.0, abs=0.005)
    assert ev.samples == 2


def test_a_connection_held_through_the_backoff_does_not_lengthen_the_timeout() -> None:
    # urllib3 closes a timed-out connection only after its backoff sleep (0, 0.2, 0.4 s)
    hung = [
        Attempt(t, "GET", "/", None, "timeout", d, outcome="client_disconnected")
        for t, d in ((0.0, 0.5), (0.5, 0.7), (1.4, 0.9), (2.5, 0.5))
    ]
    assert infer.infer_timeout(hung, cap_s=10)[0] == 0.5


def test_one_late_wakeup_is_not_jitter() -> None:
    runs = [[0.1, 0.2, 0.4], [0.1, 0.245, 0.4], [0.101, 0.2, 0.401], [0.1, 0.2, 0.4]]
    assert infer.infer_backoff(runs).backoff.jitter is False


def test_no_timeout_within_the_cap_is_none() -> None:
    held = [Attempt(0.0, "GET", "/", 504, "timeout", 10.0)]
    value, ev = infer.infer_timeout(held, cap_s=10)
    assert value is None
    assert "cap 10s" in ev.note


def _trigger(at: float, n: int, took: float = 0.01) -> Sample:
    attempts = [Attempt(0.001 + i * 0.05, "GET", "/", 503, "error 503", took) for i in range(n)]
    return Sample(0, Outcome(status=503), attempts, started_s=at)


def test_breaker_threshold_reset_and_probes() -> None:
    # 3 + 2 failed attempts, then short-circuited; a probe 1.0 s later fails and re-opens
    # it; the upstream heals at 1.5 s and the next call goes through 1.0 s after the probe
    runs = [
        _trigger(0.0, 3),
        _trigger(0.2, 2),
        _trigger(0.3, 0),
        _trigger(0.6, 0),
        _trigger(1.262, 1),
        _trigger(1.3, 0),
        _trigger(1.6, 0),
        _trigger(2.274, 1),
    ]
    fit = infer.infer_breaker(runs, healed_at_s=1.5)
    assert fit.breaker is not None
    assert fit.breaker.opens_after == 5
    assert fit.breaker.half_open_probes == 1
    assert fit.breaker.reset_s == pytest.approx(1.0, abs=0.02)
    assert fit.findings["resets_s"] == pytest.approx([1.0, 1.0], abs=0.02)


def test_no_breaker_when_every_trigger_reaches_the_upstream() -> None:
    fit = infer.infer_breaker([_trigger(i * 0.1, 1) for i in range(30)], healed_at_s=None)
    assert fit.breaker is None
    assert "never open" in fit.evidence.note


def _exp(name: str, *samples: Sample) -> ExperimentResult:
    return ExperimentResult(name, name, {}, list(samples))


def test_policy_from_a_battery() -> None:
    ok = Outcome(status=200, body_excerpt='{"forecast": 1}')
    results = {
        "baseline": _exp("baseline", Sample(0, ok, attempts_with([], status=200))),
        "fail_until_give_up": _exp(
            "fail_until_give_up",
            *(
                sample([0.1, 0.2], status=200, index=i, body_excerpt='{"cached": 1}')
                for i in range(3)
            ),
        ),
        "retry_after": _exp("retry_after", sample([1.0], status=200)),
        "client_error": _exp("client_error", sample([], status=404)),
        "reset": _exp("reset", sample([0.1], status=200)),
        "malformed": _exp(
            "malformed",
            Sample(
                0, Outcome(status=200, body_excerpt='{"cached": 1}'), attempts_with([], status=200)
            ),
        ),
    }
    policy, evidence = infer.infer_policy(
        results, retry_after_s=1, baseline_body=ok.body_excerpt, fallback_body='{"cached": 1}'
    )
    assert policy.attempts == 3
    assert policy.backoff is not None and policy.backoff.kind == "exponential"
    assert policy.retry_after is not None and policy.retry_after.honoured is True
    assert policy.retries_4xx is False
    assert policy.retries_on_reset is True
    assert policy.fallback is True
    assert policy.malformed_is_failure is True
    assert policy.breaker is None and policy.timeout_s is None  # not probed
    assert policy.retries_non_idempotent is None
    assert evidence["attempts"].experiments == ["fail_until_give_up"]
    assert set(evidence) >= {"attempts", "backoff", "retry_after", "retries_4xx", "fallback"}


def test_a_malformed_body_passed_on_is_not_a_failure() -> None:
    results = {
        "malformed": _exp(
            "malformed",
            Sample(0, Outcome(status=200, body_excerpt='{"forec'), attempts_with([], status=200)),
        ),
    }
    policy, evidence = infer.infer_policy(
        results, baseline_body='{"forecast": 1}', fallback_body=None
    )
    assert policy.malformed_is_failure is False
    assert "passed it on" in evidence["malformed_is_failure"].note


def test_jitter_that_flattens_the_least_waits_still_shows_growth_in_the_typical_ones() -> None:
    # the demo's policy: 0.1 s, 0.2 s plus uniform(0, 0.1); these draws' minimums are level
    runs = [[0.18, 0.205], [0.20, 0.29], [0.19, 0.27], [0.185, 0.26]]
    b = infer.infer_backoff(runs).backoff
    assert (b.kind, b.jitter) == ("exponential", True)


def test_a_jittered_backoff_wait_is_still_ignoring_retry_after() -> None:
    # first waits of 0.10..0.19 s seen without Retry-After: 0.18 s is one of them
    assert infer.infer_retry_after(0.18, 1.0, (0.1, 0.19))[:2] == (False, None)
    assert infer.infer_retry_after(0.5, 1.0, (0.1, 0.19))[:2] == (True, 0.5)


def _post(*keys: str | None, status: int = 503) -> Sample:
    attempts = [
        Attempt(0.1 * i, "POST", "/orders", status if i == 0 else 201, None, 0.01, key)
        for i, key in enumerate(keys)
    ]
    return Sample(0, Outcome(status=201), attempts)


@pytest.mark.parametrize(
    ("sample", "retried", "keyed"),
    [
        (_post("k1", "k1"), True, True),
        (_post(None, None), True, False),
        (_post("k1", "k2"), True, False),  # a new key per attempt: the retry is a new order
        (_post("k1"), False, True),
    ],
)
def test_post_retries_and_idempotency_key(sample: Sample, retried: bool, keyed: bool) -> None:
    policy, evidence = infer.infer_policy({"non_idempotent": _exp("non_idempotent", sample)})
    assert policy.retries_non_idempotent is retried
    assert policy.idempotency_key is keyed
    assert evidence["retries_non_idempotent"].experiments == ["non_idempotent"]


def test_a_fallback_is_told_by_its_form_not_its_numbers() -> None:
    # the demo: its cache answer carries age_s; numbers differ from call to call
    healthy = '{"attempts":1,"city":"berlin","elapsed_ms":26.7,"forecast":{"city":"berlin"}}'
    cached = '{"age_s":0.013,"attempts":3,"city":"berlin","elapsed_ms":421.0,"forecast":{"ci'
    answer = '{"age_s":0.005,"attempts":1,"city":"berlin","elapsed_ms":5.0,"forecast":{"city"'
    results = {
        "malformed": _exp(
            "malformed",
            Sample(0, Outcome(status=200, body_excerpt=answer), attempts_with([], status=200)),
        )
    }
    policy, _ = infer.infer_policy(results, baseline_body=healthy, fallback_body=cached)
    assert policy.malformed_is_failure is True
    passed_on = '{"city":"berlin","current":{"temp_c":1.6'  # the upstream's own (broken) body
    results["malformed"].samples[0].outcome.body_excerpt = passed_on
    policy, _ = infer.infer_policy(results, baseline_body=healthy, fallback_body=cached)
    assert policy.malformed_is_failure is False


def test_without_jitter_the_least_wait_is_the_wait() -> None:
    # two of three samples woke late at the second wait: the median would say 0.25 s
    runs = [[0.1, 0.25, 0.4], [0.1, 0.2, 0.4], [0.1, 0.26, 0.4]]
    fit = infer.infer_backoff(runs)
    assert fit.backoff.jitter is False
    assert fit.waits_s == pytest.approx([0.1, 0.2, 0.4])
