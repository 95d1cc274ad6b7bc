"""blackhole: every call hangs until the client gives up. Proves: the app's timeouts bound
each lookup (attempts x read timeout, within the retry time limit), the breaker opens
after 5 timed-out calls, and then the cached answer comes back at once."""

from __future__ import annotations

from tests.resilience.conftest import FAIL_MAX, Demo, assert_from_cache, explain, warm_then_apply


def test_timeouts_bound_the_wait_and_the_breaker_stops_it(make_demo, chaos_proxy) -> None:
    demo: Demo = make_demo(READ_TIMEOUT=0.5)  # the demo's 2 s would make this suite slow
    before = warm_then_apply(demo, chaos_proxy, "blackhole", ("oslo",))
    s = demo.settings
    budget = s.max_attempts * (s.read_timeout + s.backoff_max) + 1.0
    lookups = [demo.lookup("oslo") for _ in range(4)]
    slow = [r for r in lookups if r.seconds > budget]
    assert not slow, f"expected each lookup to end within {budget:g}s:\n{explain(slow)}"
    assert_from_cache(lookups)
    calls = chaos_proxy.calls[before:]
    assert all(c.outcome == "client_disconnected" for c in calls), calls.describe()
    calls.expect_breaker_opened(fail_max=FAIL_MAX, within=demo.breaker.reset_timeout)
    assert lookups[-1].body["elapsed_ms"] < 50, str(lookups[-1])
