"""storm: calm, then connection resets, then a shaky recovery. Proves: the app's breaker
goes closed -> open -> half-open -> closed in that order, as its own transitions say
and as the traffic shows (no calls while open, one probe, then traffic again). The
phases are jumped to, and the breaker's reset timeout shortened to 1 s, to keep it fast."""

from __future__ import annotations

import time

import pytest

from chaosproxy.demo_app.weather import transitions
from tests.resilience.conftest import CITIES, FAIL_MAX, Demo, explain
from tests.support import wait_until

RESET_TIMEOUT = 1.0
CYCLE = ["closed", "open", "half-open", "closed"]


@pytest.mark.chaos("storm")
def test_breaker_cycles_closed_open_half_open_closed(make_demo, chaos_proxy) -> None:
    demo: Demo = make_demo(BREAKER_RESET_TIMEOUT=RESET_TIMEOUT)
    assert chaos_proxy.phase == "calm"
    demo.warm(CITIES)
    chaos_proxy.jump_to("outage")
    during_outage = [demo.lookup("berlin") for _ in range(4)]
    assert all(r.status == 200 and r.source == "cache" for r in during_outage), explain(
        during_outage
    )
    assert demo.breaker.current_state == "open"
    opened = time.monotonic()
    chaos_proxy.jump_to("recovery")
    wait_until(lambda: time.monotonic() - opened > RESET_TIMEOUT + 0.1, timeout=5)
    after = [demo.lookup(city) for city in CITIES]
    assert all(r.status == 200 and r.source == "upstream" for r in after), explain(after)
    states = [t["to"] for t in transitions(demo.breaker)]
    assert states == CYCLE[1:], f"the app's breaker went {' -> '.join(['closed', *states])}"
    chaos_proxy.calls.expect_breaker(fail_max=FAIL_MAX, reset_timeout=RESET_TIMEOUT, states=CYCLE)
