"""The resilience suites catch a broken client: run them (as a user would, in a pytest
subprocess) against the demo app with its retry or breaker settings broken through the
demo's DEMO_* environment variables; each fails, explains itself and prints the seed."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "tests" / "resilience"

pytestmark = pytest.mark.timeout(300)


def run_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, target: str, **env: str
) -> pytest.RunResult:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return pytester.runpytest_subprocess(
        str(SUITES / target),
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        "-p",
        "no:cacheprovider",
        timeout=240,
    )


def test_one_attempt_instead_of_three_fails_the_flaky_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_suite(pytester, monkeypatch, "test_flaky.py", DEMO_RETRY_ATTEMPTS="1")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "expected no failed lookup" in out or "expected >= 95% of lookups answered" in out
    assert "from - after 1 attempt(s)" in out or "from cache after 1 attempt(s)" in out
    assert "replay: --chaos-seed 3 (or CHAOSPROXY_SEED=3)" in out
    assert "[rule unavailable, Retry-After 1s]" in out  # the decisions that led there


def test_a_breaker_that_tolerates_more_failures_fails_the_outage_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_suite(
        pytester,
        monkeypatch,
        "test_outage.py::test_breaker_opens_after_5_failures_and_the_fallback_is_fast",
        DEMO_BREAKER_FAIL_MAX="20",
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "expected: no calls after 5 failures in a row (breaker open for 10.00s)" in out
    assert "more call(s), the first" in out
    assert "-> reset in" in out and "[rule connection-reset]" in out
    assert "replay: --chaos-seed" in out


def test_ignoring_retry_after_fails_the_rate_limited_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_suite(pytester, monkeypatch, "test_rate_limited.py", DEMO_RETRY_AFTER_CAP="0")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "expected: a retry no sooner than Retry-After" in out
    assert "-> 429 in" in out and "[rule quota, Retry-After" in out
    assert "replay: --chaos-seed" in out
