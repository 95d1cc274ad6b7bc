"""slow-then-fail: every call waits 1.5 s, then fails with 503. Proves: retries stay
within the app's retry time limit, the breaker opens after 5 failures, and from then on
the cached answer comes back at once instead of after seconds."""

from __future__ import annotations

from tests.resilience.conftest import FAIL_MAX, Demo, assert_from_cache, explain, warm_then_apply


def test_breaker_stops_paying_for_slow_failures(demo: Demo, chaos_proxy) -> None:
    before = warm_then_apply(demo, chaos_proxy, "slow-then-fail", ("lima",))
    lookups = [demo.lookup("lima") for _ in range(3)]
    assert_from_cache(lookups)
    limit = demo.settings.max_retry_time + 1.5 + 1.0  # the last attempt may start just before
    slow = [r for r in lookups if r.seconds > limit]
    assert not slow, f"expected each lookup within {limit:g}s:\n{explain(slow)}"
    calls = chaos_proxy.calls[before:]
    calls.expect_breaker_opened(fail_max=FAIL_MAX, within=demo.breaker.reset_timeout)
    assert lookups[-1].body["elapsed_ms"] < 50, str(lookups[-1])
