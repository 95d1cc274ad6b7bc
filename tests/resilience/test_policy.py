"""The demo client's whole resilience policy, through one assessment (``chaos_proxy.assess``):
attempts, the backoff's shape without Retry-After, Retry-After honoured and capped, no
retry of a client error, a retried reset, the read timeout, the breaker and the fallback,
each compared with the settings the app was built with. Short settings (0.5 s read
timeout, 1 s breaker reset) keep the full battery near 15 s. A client that hangs (its
timeouts switched off) fails its timeout assertion once its own time budget is spent,
not when the test runner's timeout would have stopped it."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from chaosproxy.testing.assess import card
from chaosproxy.testing.assess.model import Assessment, json_schema
from tests.resilience.conftest import FAIL_MAX, Demo
from tests.support import validate_json

#: short timeouts keep it fast; four attempts give three waits, so the backoff's shape
#: (0.1, 0.2, 0.4 s plus up to 0.1 s of jitter) shows through its jitter
SETTINGS = {"READ_TIMEOUT": 0.5, "BREAKER_RESET_TIMEOUT": 1.0, "RETRY_ATTEMPTS": 4}


def report(assessment: Assessment) -> str:
    """The report card, plain, for an assertion's message."""
    console = Console(file=io.StringIO(), width=140)
    card.render(assessment, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def budget(demo: Demo) -> float:
    """The longest one lookup may take: every attempt timing out after its longest wait."""
    s = demo.settings
    return s.max_attempts * (s.read_timeout + s.backoff_max) + 1.0


def expect_timeout_within(assessment: Assessment, limit: float) -> None:
    """The client gives up on a hung upstream, and within ``limit`` seconds."""
    timeout = assessment.policy.timeout_s
    hang = assessment.experiment("hang")
    seen = [s.outcome for s in hang.samples] if hang else []
    assert timeout is not None and timeout <= limit, (
        f"expected the client to give up on a hung upstream within {limit:g}s; it did not "
        f"(timeout_s {timeout}; the hang's outcomes: {seen})\n{report(assessment)}"
    )


def test_the_demo_clients_whole_policy(make_demo, chaos_proxy) -> None:
    demo: Demo = make_demo(**SETTINGS)
    s = demo.settings
    a = chaos_proxy.assess(lambda: demo.lookup("berlin"))
    p, card_text = a.policy, report(a)
    print(card_text)
    assert p.attempts == s.max_attempts, card_text
    # without Retry-After: exponential from backoff_initial (plus up to one step of jitter)
    assert p.backoff is not None and p.backoff.kind == "exponential", card_text
    assert p.backoff.base_s is not None and p.backoff.multiplier is not None
    assert s.backoff_initial * 0.8 <= p.backoff.base_s <= s.backoff_initial * 2, card_text
    assert 1.5 <= p.backoff.multiplier <= 2.5, card_text  # doubling, blurred by the jitter
    assert p.backoff.jitter is True, card_text
    assert p.retry_after is not None and p.retry_after.honoured is True, card_text
    assert p.retry_after.cap_s == pytest.approx(s.retry_after_cap, rel=0.2), card_text
    assert p.retries_4xx is False, card_text
    assert p.retries_on_reset is True, card_text
    # measured at the proxy: the read timeout, and a little scheduling on a loaded machine
    assert p.timeout_s is not None, card_text
    assert 0.9 * s.read_timeout <= p.timeout_s <= 1.2 * s.read_timeout, card_text
    expect_timeout_within(a, budget(demo))
    assert p.breaker is not None, card_text
    assert p.breaker.opens_after == FAIL_MAX, card_text
    assert p.breaker.reset_s == pytest.approx(demo.breaker.reset_timeout, rel=0.2), card_text
    assert p.breaker.half_open_probes == 1, card_text
    assert p.fallback is True and p.malformed_is_failure is True, card_text
    assert chaos_proxy.scenario == "passthrough"  # the fixture is handed back clean
    validate_json(a.to_json(), json_schema())  # a full document, breaker included


def test_a_client_that_hangs_fails_within_its_own_budget(make_demo, chaos_proxy) -> None:
    # two attempts and short waits keep the budget (and the test) short: 2 x (0.5 + 0.5) + 1
    demo: Demo = make_demo(**{**SETTINGS, "RETRY_ATTEMPTS": 2, "BACKOFF_MAX": 0.5})
    demo.settings.timeouts = False  # the bug: every call waits as long as the upstream does
    limit = budget(demo)
    began = time.monotonic()
    a = chaos_proxy.assess(
        lambda: demo.lookup("berlin"), quick=True, trigger_timeout_s=limit, hang_cap_s=limit
    )
    with pytest.raises(AssertionError, match="expected the client to give up on a hung"):
        expect_timeout_within(a, limit)
    hang = a.experiment("hang")
    assert hang is not None
    outcome = hang.samples[0].outcome
    assert outcome.error == f"no answer within {limit:g}s", outcome
    assert outcome.duration_s <= limit + 1.0, outcome  # the client's budget, then no further
    assert time.monotonic() - began < 60  # far from the runner's 120 s timeout
