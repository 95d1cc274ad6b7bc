"""The oracle on real traffic: real clients (requests + tenacity + pybreaker) through a
real proxy, judged from the proxy's decision log."""

from __future__ import annotations

import pybreaker
import pytest
import requests
import tenacity

from chaosproxy.testing.oracle import Calls, ResilienceError
from tests.support import wait_until


def calls_of(proxy, n: int) -> Calls:
    return Calls(wait_until(lambda: proxy.decisions if len(proxy.decisions) >= n else None))


class Unavailable(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def fetch(url: str) -> requests.Response:
    r = requests.get(url, timeout=5)
    if r.status_code >= 500 or r.status_code == 429:
        raise Unavailable(r)
    return r


def test_retry_policy_measured_exactly_with_per_request(make_proxy) -> None:
    proxy = make_proxy(
        {
            "seed": 1,
            "rules": [{"per_request": {"times": 2}, "fault": {"type": "error", "status": 503}}],
        }
    )
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_exponential(multiplier=0.05, max=1) + tenacity.wait_random(0, 0.05),
        retry=tenacity.retry_if_exception_type(Unavailable),
        reraise=True,
    )
    for city in ("berlin", "paris", "rome"):
        assert retrying(fetch, f"{proxy.url}/v1/forecast/{city}").status_code == 200
    calls = calls_of(proxy, 9)
    assert calls.expect_attempts(3) == {key: 3 for key in calls.attempts()}
    gaps = calls.expect_backoff(min_delay=0.05, max_delay=0.5, growing=True, jittered=True)
    assert all(len(g) == 2 for g in gaps.values())
    with pytest.raises(ResilienceError, match="expected: 2 attempts per logical request"):
        calls.expect_attempts(2)


def test_retry_after_honoured_and_a_client_that_ignores_it_is_caught(make_proxy) -> None:
    fault = {"type": "error", "status": 503, "headers": {"Retry-After": "1"}}
    proxy = make_proxy({"seed": 1, "rules": [{"per_request": {"times": 1}, "fault": fault}]})

    def wait_retry_after(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Unavailable):
            return float(exc.response.headers.get("Retry-After", "0.1"))
        return 0.1

    polite = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(2), wait=wait_retry_after, reraise=True
    )
    assert polite(fetch, f"{proxy.url}/polite").status_code == 200
    impatient = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_fixed(0.05), reraise=True
    )
    assert impatient(fetch, f"{proxy.url}/impatient").status_code == 200
    calls = calls_of(proxy, 4)
    assert calls.matching(path="/polite").expect_retry_after(slack=0.5) == 1
    with pytest.raises(ResilienceError) as info:
        calls.matching(path="/impatient").expect_retry_after()
    text = str(info.value)
    assert "expected: a retry no sooner than Retry-After (1.00s)" in text
    assert "GET http" in text and "/impatient -> 503" in text and "Retry-After 1s" in text


def test_breaker_inferred_from_traffic(make_proxy) -> None:
    storm = {
        "seed": 1,
        "phases": [
            {
                "name": "down",
                "rules": [{"fault": {"type": "abort", "how": "reset"}}],
                "duration": "1h",
            },
            {"name": "up"},
        ],
    }
    proxy = make_proxy(storm)
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=0.5)

    def call(path: str) -> str:
        try:
            breaker.call(fetch, f"{proxy.url}{path}")
            return "ok"
        except pybreaker.CircuitBreakerError:
            return "fallback"
        except (requests.ConnectionError, Unavailable):
            return "failed"

    results = [call(f"/item/{i}") for i in range(6)]
    assert results == ["failed", "failed", "fallback", "fallback", "fallback", "fallback"]
    proxy.jump_to("up")
    wait_until(lambda: call("/probe") == "ok", timeout=5, interval=0.05)
    results = [call(f"/after/{i}") for i in range(3)]
    assert results == ["ok"] * 3
    calls = calls_of(proxy, 7)
    events = calls.expect_breaker(
        fail_max=3, reset_timeout=0.5, states=["closed", "open", "half-open", "closed"]
    )
    assert [e.state for e in events][-1] == "closed"
    calls.expect_breaker_opened(fail_max=3, within=0.4)
    # a client without a breaker keeps calling: the oracle says so, with the timeline
    with pytest.raises(ResilienceError, match="no calls for 5.00s while the breaker is open"):
        calls.expect_breaker(fail_max=2, reset_timeout=5.0)


def test_non_idempotent_retries_seen_on_the_wire(make_proxy) -> None:
    proxy = make_proxy(
        {
            "seed": 1,
            "rules": [{"per_request": {"times": 1}, "fault": {"type": "error", "status": 503}}],
        }
    )
    naive = tenacity.Retrying(stop=tenacity.stop_after_attempt(2), reraise=True)

    def post(path: str, headers: dict[str, str] | None = None) -> requests.Response:
        r = requests.post(f"{proxy.url}{path}", data=b'{"qty": 1}', headers=headers, timeout=5)
        if r.status_code >= 500:
            raise Unavailable(r)
        return r

    assert naive(post, "/orders").status_code == 200
    assert naive(post, "/keyed", {"Idempotency-Key": "order-1"}).status_code == 200
    calls = calls_of(proxy, 4)
    calls.matching(path="/keyed").expect_no_retry_of_non_idempotent()
    with pytest.raises(ResilienceError) as info:
        calls.expect_no_retry_of_non_idempotent()
    assert "seen:     POST http" in str(info.value) and "/orders sent 2 times" in str(info.value)
