"""rate-limited: 3 calls per 5 s, then 429 with Retry-After. Proves: after a 429 the app
waits as Retry-After says (up to the demo's cap of 2 s) before trying again, and no lookup
fails: it gets through, or the cached answer is served."""

from __future__ import annotations

import pytest

from tests.resilience.conftest import CITIES, Demo, explain

RETRY_AFTER_CAP = 2.0  # the demo honours Retry-After up to this many seconds


@pytest.mark.chaos("rate-limited")
def test_429s_are_retried_after_retry_after(demo: Demo, chaos_proxy) -> None:
    lookups = [demo.lookup(city) for city in CITIES[:3]]
    lookups += [demo.lookup(CITIES[0]), demo.lookup(CITIES[1])]
    failed = [r for r in lookups if r.status != 200]
    assert not failed, f"expected no failed lookup:\n{explain(failed)}"
    calls = chaos_proxy.calls
    limited = [c for c in calls if c.status == 429]
    assert limited, "the rate limit never answered 429: this test tested nothing"
    checked = calls.expect_retry_after(cap=RETRY_AFTER_CAP, slack=1.0)
    assert checked >= 1
