"""truncated: half the answers stop halfway (Content-Length promised, connection closed).
Proves: the app never answers 500; an incomplete body counts as a failure and is retried,
and when every attempt is cut the cached forecast is served: users always get a complete
forecast."""

from __future__ import annotations

from chaosproxy.demo_app.weather import validate_forecast
from tests.resilience.conftest import (
    CITIES,
    Demo,
    expect_attempts_per_lookup,
    explain,
    warm_then_apply,
)


def test_cut_answers_are_retried_never_passed_on(demo: Demo, chaos_proxy) -> None:
    before = warm_then_apply(demo, chaos_proxy, "truncated", CITIES)
    lookups = [demo.lookup(city) for city in CITIES * 2]
    errors = [r for r in lookups if r.status >= 500]
    assert not errors, f"expected never a 5xx from the app:\n{explain(errors)}"
    for r in lookups:
        validate_forecast(r.body["forecast"])
    calls = chaos_proxy.calls[before:]
    assert calls.injected, "the scenario injected nothing: this test tested nothing"
    retried = [r for r in lookups if r.body["attempts"] > 1]
    assert retried, f"expected cut answers to be retried:\n{explain(lookups)}"
    expect_attempts_per_lookup(calls, lookups, at_most=demo.settings.max_attempts)
