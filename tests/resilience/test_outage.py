"""outage: every connection is reset. Proves: the breaker opens after 5 failures (no call
reaches the upstream after the 5th), and while it is open the cached answer comes back
in under 50 ms."""

from __future__ import annotations

import pytest

from tests.resilience.conftest import FAIL_MAX, Demo, assert_from_cache, explain, warm_then_apply


def test_breaker_opens_after_5_failures_and_the_fallback_is_fast(demo: Demo, chaos_proxy) -> None:
    before = warm_then_apply(demo, chaos_proxy, "outage", ("berlin",))
    lookups = [demo.lookup("berlin") for _ in range(6)]
    assert_from_cache(lookups)
    calls = chaos_proxy.calls[before:]
    calls.expect_breaker_opened(fail_max=FAIL_MAX, within=demo.breaker.reset_timeout)
    while_open = lookups[-3:]  # by then 5 calls have failed (3 + 2 attempts)
    slow = [r for r in while_open if r.body["elapsed_ms"] >= 50]
    assert not slow, f"expected the fallback in < 50 ms while the breaker is open:\n{explain(slow)}"
    assert all("circuit breaker open" in r.body["reason"] for r in while_open), explain(while_open)


@pytest.mark.chaos("outage")
def test_without_a_cache_the_app_says_unavailable_never_500(demo: Demo, chaos_proxy) -> None:
    lookups = [demo.lookup("nairobi") for _ in range(3)]
    assert [r.status for r in lookups] == [503] * 3, explain(lookups)
