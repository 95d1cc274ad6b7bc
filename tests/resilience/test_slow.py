"""slow: every call 600 ms +- 200 ms slower. Proves: each lookup is still answered by the
upstream, in one attempt, within the app's time budget (its read timeout)."""

from __future__ import annotations

import pytest

from tests.resilience.conftest import CITIES, Demo, explain


@pytest.mark.chaos("slow", seed=1)
def test_slow_upstream_answers_within_the_time_budget(demo: Demo, chaos_proxy) -> None:
    budget = demo.settings.read_timeout
    lookups = [demo.lookup(city) for city in CITIES]
    late = [r for r in lookups if r.status != 200 or r.source != "upstream" or r.seconds > budget]
    assert not late, (
        f"expected every lookup answered by the upstream within the {budget:g}s budget; "
        f"these were not:\n{explain(late)}"
    )
    chaos_proxy.calls.expect_attempts(1)  # no timeout fired, so nothing was retried
    assert len(chaos_proxy.calls.injected) == len(CITIES)
