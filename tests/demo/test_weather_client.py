"""WeatherClient: retries, Retry-After, the breaker, validation and the fallback.

HTTP is answered by ``responses`` (the requests adapter is replaced, nothing listens);
sleeps between retries are recorded instead of slept.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from unittest import mock

import pybreaker
import pytest
import requests
import responses

from chaosproxy.demo_app.weather import (
    CityNotFound,
    ClientSettings,
    InvalidForecast,
    Unavailable,
    WeatherClient,
    make_breaker,
    parse_retry_after,
    transitions,
    validate_forecast,
)
from tests.demo.canned import BERLIN, INVALID_JSON
from tests.support import wait_until

URL = "http://weather.test/v1/forecast/berlin"


def make_client(**settings: Any) -> tuple[WeatherClient, list[float]]:
    slept: list[float] = []
    breaker = make_breaker(
        fail_max=settings.pop("fail_max", 5), reset_timeout=settings.pop("reset_timeout", 10)
    )
    client = WeatherClient(
        "http://weather.test", ClientSettings(**settings), breaker=breaker, sleep=slept.append
    )
    return client, slept


def ok() -> responses.Response:
    return responses.Response(responses.GET, URL, json=BERLIN)


def status(code: int, **headers: str) -> responses.Response:
    return responses.Response(responses.GET, URL, status=code, json={"error": "x"}, headers=headers)


def test_healthy_upstream_answers_on_the_first_attempt(mocked: responses.RequestsMock) -> None:
    mocked.add(ok())
    client, slept = make_client()
    result = client.forecast("berlin")
    assert (result.source, result.outcome, result.attempts) == ("upstream", "ok", 1)
    assert result.data == BERLIN
    assert slept == []


def test_503_then_200_is_one_retry(mocked: responses.RequestsMock) -> None:
    mocked.add(status(503))
    mocked.add(ok())
    client, slept = make_client()
    result = client.forecast("berlin")
    assert (result.outcome, result.attempts) == ("ok_retry", 2)
    assert len(mocked.calls) == 2
    assert len(slept) == 1 and 0 < slept[0] <= 0.2  # backoff 0.1 s + up to 0.1 s jitter


def test_connection_error_then_success(mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, URL, body=requests.ConnectionError("connection reset"))
    mocked.add(ok())
    client, _ = make_client()
    assert client.forecast("berlin").outcome == "ok_retry"


def test_timeouts_exhaust_the_attempts_then_503_without_a_cache(
    mocked: responses.RequestsMock,
) -> None:
    mocked.add(responses.GET, URL, body=requests.ReadTimeout("read timed out"))
    client, slept = make_client(max_attempts=3)
    with pytest.raises(Unavailable) as info:
        client.forecast("berlin")
    assert info.value.attempts == 3
    assert "ReadTimeout" in info.value.reason
    assert len(mocked.calls) == 3
    assert len(slept) == 2 and slept[1] >= slept[0] * 0.5  # exponential, jittered


def test_backoff_grows_exponentially_and_is_capped(mocked: responses.RequestsMock) -> None:
    mocked.add(status(502))
    client, slept = make_client(
        max_attempts=6, backoff_initial=0.1, backoff_max=0.3, fail_max=100, max_retry_time=60
    )
    with pytest.raises(Unavailable):
        client.forecast("berlin")
    assert len(slept) == 5
    assert 0.1 <= slept[0] <= 0.2 and 0.2 <= slept[1] <= 0.3
    assert all(s <= 0.3 + 1e-9 for s in slept)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("1", 1.0), ("0", 0.1), ("30", 2.0)],  # below the backoff: backoff; above the cap: the cap
)
def test_retry_after_is_honoured_up_to_the_cap(
    mocked: responses.RequestsMock, header: str, expected: float
) -> None:
    mocked.add(status(429, **{"Retry-After": header}))
    mocked.add(ok())
    client, slept = make_client(retry_after_cap=2.0, backoff_initial=0.1)
    assert client.forecast("berlin").outcome == "ok_retry"
    assert slept[0] == pytest.approx(expected, abs=0.1 if header == "0" else 1e-9)


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=3), usegmt=True)
    assert parse_retry_after(header, now=lambda: now) == 3.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_retry_after_beyond_the_time_budget_stops_retrying(
    mocked: responses.RequestsMock,
) -> None:
    mocked.add(status(503, **{"Retry-After": "5"}))
    client, slept = make_client(retry_after_cap=5, max_retry_time=1.0)
    with pytest.raises(Unavailable):
        client.forecast("berlin")
    assert slept == [] and len(mocked.calls) == 1


def test_4xx_is_not_retried_and_not_a_breaker_failure(mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, URL, status=404, json={"error": "unknown city"})
    client, _ = make_client()
    with pytest.raises(CityNotFound):
        client.forecast("berlin")
    assert len(mocked.calls) == 1
    assert client.breaker.fail_counter == 0


def test_the_breaker_opens_after_fail_max_failures_and_is_never_retried(
    mocked: responses.RequestsMock,
) -> None:
    mocked.add(status(503))
    client, _ = make_client(max_attempts=3, fail_max=5)
    with pytest.raises(Unavailable):
        client.forecast("berlin")  # 3 attempts, 3 failures
    assert client.breaker.fail_counter == 3
    with pytest.raises(Unavailable) as info:
        client.forecast("berlin")  # 2 more failures: the fifth opens the breaker, no 3rd try
    assert "circuit breaker open" in info.value.reason
    assert len(mocked.calls) == 5
    assert client.breaker.current_state == "open"
    with pytest.raises(Unavailable):
        client.forecast("berlin")  # open: fails fast, the upstream is not called
    assert len(mocked.calls) == 5
    assert [(t["from"], t["to"]) for t in transitions(client.breaker)] == [("closed", "open")]


def test_open_breaker_serves_the_cache_fast(mocked: responses.RequestsMock) -> None:
    mocked.add(ok())
    client, _ = make_client(fail_max=1)
    client.forecast("berlin")
    mocked.replace(responses.GET, URL, body=requests.ConnectionError("reset"))
    first = client.forecast("berlin")  # trips the breaker: served from the cache
    assert (first.source, first.outcome) == ("cache", "fallback")
    started = time.perf_counter()
    second = client.forecast("berlin")
    assert time.perf_counter() - started < 0.5
    assert second.source == "cache" and second.data == BERLIN
    assert "circuit breaker open" in (second.reason or "")
    assert len(mocked.calls) == 2


def test_half_open_then_closed_after_the_reset_timeout(mocked: responses.RequestsMock) -> None:
    mocked.add(status(500))
    client, _ = make_client(fail_max=2, reset_timeout=0.2, max_attempts=2)
    with pytest.raises(Unavailable):
        client.forecast("berlin")
    assert client.breaker.current_state == "open"
    mocked.replace(responses.GET, URL, json=BERLIN)

    def recovered() -> bool:
        try:
            return client.forecast("berlin").source == "upstream"
        except Unavailable:
            return False

    wait_until(recovered, timeout=10, interval=0.05)
    assert client.breaker.current_state == "closed"
    assert [(t["from"], t["to"]) for t in transitions(client.breaker)] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


@pytest.mark.parametrize("name", sorted(INVALID_JSON))
def test_invalid_json_shapes_are_failures_never_passed_on(
    mocked: responses.RequestsMock, name: str
) -> None:
    mocked.add(responses.GET, URL, json=INVALID_JSON[name])
    client, _ = make_client()
    with pytest.raises(Unavailable) as info:
        client.forecast("berlin")
    assert "forecast" in info.value.reason
    assert len(mocked.calls) == 1  # a broken body is not retried
    assert client.breaker.fail_counter == 1  # but it counts against the breaker


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        ('{"city": "berlin", "current": {"temp', "application/json", "not valid JSON"),
        ("<html><body>502 Bad Gateway</body></html>", "text/html", "content type text/html"),
        ("", "application/json", "not valid JSON"),
        ("", "", "content type missing"),
    ],
)
def test_malformed_answers_fall_back_to_the_cache(
    mocked: responses.RequestsMock, body: str, content_type: str, reason: str
) -> None:
    mocked.add(ok())
    client, _ = make_client()
    client.forecast("berlin")
    mocked.replace(responses.GET, URL, body=body, content_type=content_type or None)
    if not content_type:
        mocked.replace(responses.GET, URL, body=body, headers={"Content-Type": ""})
    result = client.forecast("berlin")
    assert (result.source, result.data) == ("cache", BERLIN)
    assert reason in (result.reason or "")


def test_with_the_breaker_off_every_request_pays_all_its_retries(
    mocked: responses.RequestsMock,
) -> None:
    mocked.add(status(503))
    client, _ = make_client(breaker=False, max_attempts=3, fail_max=2)
    for _ in range(4):
        with pytest.raises(Unavailable):
            client.forecast("berlin")
    assert len(mocked.calls) == 12
    assert client.breaker.current_state == "closed"


def test_with_retries_off_one_attempt(mocked: responses.RequestsMock) -> None:
    mocked.add(status(503))
    mocked.add(ok())
    client, _ = make_client(retries=False)
    with pytest.raises(Unavailable):
        client.forecast("berlin")
    assert len(mocked.calls) == 1


def test_timeouts_are_passed_to_requests_and_can_be_switched_off() -> None:
    client, _ = make_client(connect_timeout=0.25, read_timeout=1.5)
    answer = mock.Mock(status_code=200, headers={"Content-Type": "application/json"})
    answer.json.return_value = BERLIN
    with mock.patch("chaosproxy.demo_app.weather.requests.Session.get", return_value=answer) as get:
        client.forecast("berlin")
        assert get.call_args.kwargs["timeout"] == (0.25, 1.5)
        client.settings.timeouts = False
        client.forecast("berlin")
        assert get.call_args.kwargs["timeout"] is None


def test_side_effect_sequence_through_the_session() -> None:
    """mock.patch on the path the code calls: reset, timeout, then an answer."""
    client, slept = make_client()
    answer = mock.Mock(status_code=200, headers={"Content-Type": "application/json"})
    answer.json.return_value = BERLIN
    effects = [requests.ConnectionError("reset"), requests.ConnectTimeout("slow"), answer]
    with mock.patch("chaosproxy.demo_app.weather.requests.Session.get", side_effect=effects) as get:
        result = client.forecast("berlin")
    assert get.call_count == 3
    assert (result.outcome, result.attempts, len(slept)) == ("ok_retry", 3, 2)


def test_an_unexpected_breaker_error_is_not_retried() -> None:
    client, _ = make_client()
    with mock.patch.object(
        client.breaker, "call", side_effect=pybreaker.CircuitBreakerError("open")
    ) as call:
        with pytest.raises(Unavailable):
            client.forecast("berlin")
    assert call.call_count == 1


def test_validate_forecast_names_the_field() -> None:
    with pytest.raises(InvalidForecast, match=r"forecast\.daily\[0\]\.max_c"):
        validate_forecast(INVALID_JSON["daily-missing-max"])
    assert validate_forecast(BERLIN) is BERLIN
