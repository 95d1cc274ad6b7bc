"""flaky: about one call in three answers 503 with Retry-After: 1. Proves: with 3
attempts no lookup fails and at least 95 % are answered by the upstream (not the
cache), each retry waiting as Retry-After says."""

from __future__ import annotations

import pytest

from tests.resilience.conftest import CITIES, Demo, expect_attempts_per_lookup, explain


@pytest.mark.chaos("flaky", seed=3)
def test_retries_hide_a_flaky_upstream(demo: Demo, chaos_proxy) -> None:
    lookups = [demo.lookup(city) for city in CITIES * 4]
    failed = [r for r in lookups if r.status != 200]
    assert not failed, f"expected no failed lookup; {len(failed)} failed:\n{explain(failed)}"
    from_cache = [r for r in lookups if r.source != "upstream"]
    share = 1 - len(from_cache) / len(lookups)
    assert share >= 0.95, (
        f"expected >= 95% of lookups answered by the upstream, seen {share:.0%}; "
        f"from the cache:\n{explain(from_cache)}"
    )
    calls = chaos_proxy.calls
    assert len(calls.injected) >= 0.2 * len(calls)  # the scenario really did inject
    expect_attempts_per_lookup(calls, lookups, at_most=3)
    calls.expect_retry_after(slack=1.0)
