"""``latency`` given by quantiles (``p50: 80ms, p95: 250ms, p99: 900ms``), issue 20 item 6."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from statistics import NormalDist

import pytest

from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.fault import Wire
from chaosproxy.core.scenario import ScenarioError, load_data, load_text
from chaosproxy.faults.latency import Latency, QuantileFit
from tests.faults.fakewire import FakeWire

ISSUE = {"p50": "80ms", "p95": "250ms", "p99": "900ms"}
GIVEN = {0.50: 0.080, 0.95: 0.250, 0.99: 0.900}


def latency(**fields: object) -> Latency:
    return Latency.model_validate({"type": "latency", **fields})


@pytest.mark.parametrize("fit", ["lognormal", "normal"])
def test_the_fit_meets_each_given_quantile(fit: str) -> None:
    fault = latency(**ISSUE, fit=fit)
    assert fault.quantiles == GIVEN
    assert fault._fit is not None
    for p, value in GIVEN.items():
        assert fault._fit.quantile(p) == pytest.approx(value, rel=1e-9)
    # between and beyond the given ones it is monotonic
    grid = [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999]
    values = [fault._fit.quantile(p) for p in grid]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_two_quantiles_are_exactly_one_lognormal() -> None:
    fit = QuantileFit.through({0.5: 0.1, 0.99: 1.0}, "lognormal")
    sigma = math.log(10) / NormalDist().inv_cdf(0.99)
    for p in (0.01, 0.2, 0.5, 0.9, 0.999):
        expected = math.exp(math.log(0.1) + sigma * NormalDist().inv_cdf(p))
        assert fit.quantile(p) == pytest.approx(expected, rel=1e-9)


def test_ten_thousand_decisions_meet_each_quantile_within_5_percent() -> None:
    """The issue's check, through the engine: 10,000 decisions of a seeded scenario, each
    delay drawn from the decision's own random stream as the proxy draws it. Sampling
    error alone is ~1 % (p50), ~2.5 % (p95) and ~7 % (p99, one standard deviation) for
    this steep tail at 10,000 draws, so the check is made with one seed, fixed here (20,
    the issue's number, chosen before looking); the next test checks any seed."""
    rule = {"name": "slow", "fault": {"type": "latency", **ISSUE}}
    engine = Engine(load_data({"seed": 20, "rules": [rule]}))
    delays = []
    for _ in range(10_000):
        decision = engine.decide(SimpleRequest("GET", "api.example", "/v1/items"))
        assert decision is not None
        (fault,) = decision.faults
        delays.append(fault.sample(decision.rng()))
    cuts = statistics.quantiles(delays, n=1000, method="inclusive")
    for p, value in GIVEN.items():
        measured = cuts[round(p * 1000) - 1]
        assert abs(measured - value) <= 0.05 * value, f"p{p * 100:g}: {measured:.4f}s"


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("fit", ["lognormal", "normal"])
def test_draws_follow_the_fit_whatever_the_seed(seed: int, fit: str) -> None:
    """The share of draws below each given quantile is its probability, within four
    binomial standard errors (a false alarm about once in 16,000 checks)."""
    fault = latency(**ISSUE, fit=fit)
    rng = random.Random(seed)
    n = 10_000
    draws = [fault.sample(rng) for _ in range(n)]
    for p, value in GIVEN.items():
        below = sum(d < value for d in draws) / n
        assert abs(below - p) <= 4 * math.sqrt(p * (1 - p) / n), (p, below)


def test_applied_on_the_wire_as_a_draw_from_the_rules_stream() -> None:
    fault = latency(**ISSUE)
    wire = FakeWire(arrival=1000.0, seed=5)
    typed: Wire = wire
    asyncio.run(fault.apply(typed))
    assert wire.actions == [("sleep_until", 1000.0 + fault.sample(random.Random(5)))]


def test_draws_are_clamped_to_the_absurd_limit() -> None:
    fault = latency(p50="1m", p99="9m")
    rng = random.Random(4)
    assert max(fault.sample(rng) for _ in range(5000)) <= 600.0


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (ISSUE, "latency p50 80ms, p95 250ms, p99 900ms"),
        (
            {"p90": "1s", "p999": "3s", "fit": "normal", "on": "response"},
            "latency p90 1s, p999 3s (normal fit) on response",
        ),
    ],
)
def test_describe(fields: dict[str, object], text: str) -> None:
    assert latency(**fields).describe() == text


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("{type: latency, p50: 80ms}", "give at least two quantiles: p50 alone"),
        ("{type: latency, p50: 300ms, p95: 250ms}", "p95 (250ms) must be above p50 (300ms)"),
        ("{type: latency, p50: 80ms, p95: 80ms}", "p95 (80ms) must be above p50 (80ms)"),
        ("{type: latency, p50: 80ms, p95: 250ms, delay: 1s}", "give one of delay"),
        ("{type: latency, delay: 1s, fit: normal}", "fit goes with quantiles"),
        ("{type: latency, p50: 0, p95: 250ms}", "p50 must be above 0 for a lognormal fit"),
        ("{type: latency, p50: 80ms, p95: 250ms, jitter: 10ms}", "jitter goes with delay"),
        ("{type: latency, p50: 80ms, p99: 11m}", "delay of 11m is longer than 10m"),
        ("{type: latency, p50: 80ms, p99: 1s, fit: gamma}", "fit: must be 'lognormal' or"),
    ],
)
def test_bad_quantiles_are_located(fault: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_text(f"rules: [{{fault: {fault}}}]", "s.yaml")
    assert str(caught.value).startswith("s.yaml:1:")
    assert message in str(caught.value)


def test_a_normal_fit_may_start_at_zero() -> None:
    fault = load_text("rules: [{fault: {type: latency, p50: 0, p95: 250ms, fit: normal}}]")
    (latency_fault,) = fault.rules[0].fault
    rng = random.Random(1)
    draws = [latency_fault.sample(rng) for _ in range(2000)]
    assert min(draws) == 0.0 and max(draws) > 0.2
