"""healthy: nothing injected, so every lookup is one call answered by the upstream."""

from __future__ import annotations

import pytest

from tests.resilience.conftest import CITIES, Demo, explain


@pytest.mark.chaos("healthy")
def test_every_lookup_is_one_upstream_call(demo: Demo, chaos_proxy) -> None:
    lookups = [demo.lookup(city) for city in CITIES]
    assert all(r.status == 200 and r.source == "upstream" for r in lookups), explain(lookups)
    calls = chaos_proxy.calls
    calls.expect_attempts(1)
    assert len(calls) == len(CITIES) and not calls.injected
