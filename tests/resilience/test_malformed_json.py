"""malformed-json: answers that are 200 but whose JSON is broken or has the wrong shape.
Proves: the app never answers 500 and never passes a broken forecast on; it serves the
last good answer from its cache instead."""

from __future__ import annotations

from chaosproxy.demo_app.weather import validate_forecast
from tests.resilience.conftest import CITIES, Demo, explain, warm_then_apply


def test_broken_json_is_never_a_500_and_the_fallback_is_served(demo: Demo, chaos_proxy) -> None:
    before = warm_then_apply(demo, chaos_proxy, "malformed-json", CITIES)
    lookups = [demo.lookup(city) for city in CITIES * 3]
    errors = [r for r in lookups if r.status >= 500]
    assert not errors, f"expected never a 5xx from the app:\n{explain(errors)}"
    for r in lookups:
        validate_forecast(r.body["forecast"])  # what the user got is a real forecast
    calls = chaos_proxy.calls[before:]
    assert calls.injected, "the scenario injected nothing: this test tested nothing"
    fallbacks = [r for r in lookups if r.source == "cache"]
    assert fallbacks, f"expected the cached forecast served for broken answers:\n{explain(lookups)}"
