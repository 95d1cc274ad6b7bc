"""throttled: headers at once, then the body at 10 KB/s after a 300 ms pause. Proves: the
app still gets every forecast from the upstream, in one attempt, within its time budget
(its read timeout), because the body keeps arriving."""

from __future__ import annotations

import pytest

from tests.resilience.conftest import CITIES, Demo, explain


@pytest.mark.chaos("throttled")
def test_a_slow_link_is_slow_but_answers(demo: Demo, chaos_proxy) -> None:
    budget = demo.settings.read_timeout
    lookups = [demo.lookup(city) for city in CITIES[:3]]
    late = [r for r in lookups if r.status != 200 or r.source != "upstream" or r.seconds > budget]
    assert not late, f"expected answers from the upstream within {budget:g}s:\n{explain(late)}"
    assert all(r.seconds >= 0.3 for r in lookups), explain(lookups)  # the pause was there
    chaos_proxy.calls.expect_attempts(1)
    assert len(chaos_proxy.calls.injected) == 3
