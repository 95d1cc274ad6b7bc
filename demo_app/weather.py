"""WeatherClient: how an app should call a flaky upstream.

One forecast lookup is: a ``requests.Session`` call with connect and read timeouts, inside
a circuit breaker (pybreaker), inside tenacity retries (bounded attempts and total time,
exponential backoff with jitter, ``Retry-After`` honoured up to a cap), and a fallback to
the last good answer when all of that fails. Retries sit outside the breaker, so every
attempt counts as one call for the breaker, and an open breaker is never retried.

Invalid answers (not JSON, the wrong content type, missing fields) are failures like a
503: they count against the breaker and are never passed on.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import pybreaker
import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

Outcome = Literal["ok", "ok_retry", "fallback", "error"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "ok_retry", "fallback", "error")


@dataclass
class ClientSettings:
    """What the presenter can switch on the dashboard (``POST /settings``)."""

    retries: bool = True
    breaker: bool = True
    timeouts: bool = True
    connect_timeout: float = 0.5
    read_timeout: float = 2.0
    max_attempts: int = 3
    max_retry_time: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 1.0
    retry_after_cap: float = 2.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UpstreamFailure(Exception):
    """The upstream did not give a usable answer."""

    retryable = False
    retry_after: float | None = None

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamStatusError(UpstreamFailure):
    """A 5xx or 429 answer (retryable), honouring its ``Retry-After``."""

    retryable = True

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.retry_after = retry_after


class InvalidForecast(UpstreamFailure):
    """A 200 whose body is not a forecast: malformed, wrong content type, missing fields."""


class CityNotFound(Exception):
    """The upstream does not know the city (a 4xx: the caller's fault, not the upstream's)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status


class Unavailable(Exception):
    """No answer and nothing cached: the app answers 503."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@dataclass
class Forecast:
    """A forecast and where it came from."""

    data: dict[str, Any]
    source: Literal["upstream", "cache"]
    attempts: int
    outcome: Outcome
    age: float | None = None
    reason: str | None = None


#: Transport failures worth another attempt (a reset, a refused or cut connection, a timeout).
TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def is_retryable(exc: BaseException) -> bool:
    """Retry transport failures, 5xx and 429; never an open breaker or a bad body."""
    if isinstance(exc, pybreaker.CircuitBreakerError):
        return False
    if isinstance(exc, UpstreamFailure):
        return exc.retryable
    return isinstance(exc, TRANSIENT)


def parse_retry_after(value: str | None, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_forecast(doc: Any) -> dict[str, Any]:
    """``doc`` if it has a forecast's shape, else InvalidForecast naming the first problem."""
    if not isinstance(doc, dict):
        raise InvalidForecast("forecast is not a JSON object")
    if not isinstance(doc.get("city"), str) or not doc["city"]:
        raise InvalidForecast("forecast.city: missing or not a string")
    current = doc.get("current")
    if not isinstance(current, dict):
        raise InvalidForecast("forecast.current: missing or not an object")
    if not _is_number(current.get("temp_c")):
        raise InvalidForecast("forecast.current.temp_c: missing or not a number")
    if not isinstance(current.get("conditions"), str):
        raise InvalidForecast("forecast.current.conditions: missing or not a string")
    daily = doc.get("daily")
    if not isinstance(daily, list):
        raise InvalidForecast("forecast.daily: missing or not a list")
    for i, day in enumerate(daily):
        if not isinstance(day, dict):
            raise InvalidForecast(f"forecast.daily[{i}]: not an object")
        if not isinstance(day.get("date"), str):
            raise InvalidForecast(f"forecast.daily[{i}].date: missing or not a string")
        for key in ("min_c", "max_c"):
            if not _is_number(day.get(key)):
                raise InvalidForecast(f"forecast.daily[{i}].{key}: missing or not a number")
        if not isinstance(day.get("conditions"), str):
            raise InvalidForecast(f"forecast.daily[{i}].conditions: missing or not a string")
    return doc


class ConcurrentBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker that does not serialise the calls it guards.

    ``CircuitBreaker.call`` holds one lock for the whole guarded call, so with a slow
    upstream every request of the app would queue behind the one in flight. Here the call
    runs outside that lock; state changes still take it. The price: in half-open, the few
    requests arriving together all go through as trial calls.
    """

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.state.call(func, *args, **kwargs)


class TransitionLog(pybreaker.CircuitBreakerListener):
    """Every state change of the breaker, newest last, for the dashboard."""

    def __init__(self, size: int = 50) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=size)

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else None
        if old == new_state.name:  # a late failure re-opening an open breaker
            return
        self.entries.append({"time": time.time(), "from": old, "to": new_state.name})

    def clear(self) -> None:
        self.entries.clear()


def make_breaker(fail_max: int = 5, reset_timeout: float = 10.0) -> ConcurrentBreaker:
    """The breaker around the upstream: a 4xx (CityNotFound) does not count as a failure."""
    return ConcurrentBreaker(
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        exclude=[CityNotFound],
        listeners=[TransitionLog()],
        name="weather-upstream",
    )


def transitions(breaker: pybreaker.CircuitBreaker) -> list[dict[str, Any]]:
    for listener in breaker.listeners:
        if isinstance(listener, TransitionLog):
            return list(listener.entries)
    return []


def clear_transitions(breaker: pybreaker.CircuitBreaker) -> None:
    for listener in breaker.listeners:
        if isinstance(listener, TransitionLog):
            listener.clear()


@dataclass
class _Cached:
    data: dict[str, Any]
    at: float


@dataclass
class WeatherClient:
    """Forecasts from ``base_url`` (the proxy in the demo), protected and with a fallback."""

    base_url: str
    settings: ClientSettings = field(default_factory=ClientSettings)
    breaker: pybreaker.CircuitBreaker = field(default_factory=make_breaker)
    session: requests.Session = field(default_factory=requests.Session)
    #: injectable for tests; by default tenacity sleeps with time.sleep
    sleep: Callable[[float], None] | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ one attempt

    def _timeout(self) -> tuple[float, float] | None:
        s = self.settings
        return (s.connect_timeout, s.read_timeout) if s.timeouts else None

    def fetch_once(self, city: str) -> dict[str, Any]:
        """One HTTP call: the validated forecast, or an exception saying what went wrong."""
        response = self.session.get(
            f"{self.base_url}/v1/forecast/{city}",
            timeout=self._timeout(),
            allow_redirects=False,
            headers={"Accept": "application/json"},
        )
        status = response.status_code
        if status == 429 or status >= 500:
            raise UpstreamStatusError(
                status, parse_retry_after(response.headers.get("Retry-After"))
            )
        if 400 <= status < 500:
            raise CityNotFound(status)
        if status != 200:
            raise InvalidForecast(f"upstream answered {status}")
        ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise InvalidForecast(f"content type {ctype or 'missing'}, not application/json")
        try:
            doc = response.json()
        except ValueError:
            raise InvalidForecast("body is not valid JSON") from None
        return validate_forecast(doc)

    def _guarded(self, city: str) -> dict[str, Any]:
        if self.settings.breaker:
            return dict(self.breaker.call(self.fetch_once, city))
        return self.fetch_once(city)

    # ------------------------------------------------------------------ retries

    def _wait(self, state: RetryCallState) -> float:
        s = self.settings
        # exponential backoff plus up to one initial step of jitter, never above the maximum
        exponential = wait_exponential(multiplier=s.backoff_initial, max=s.backoff_max)(state)
        backoff = min(exponential + random.uniform(0, s.backoff_initial), s.backoff_max)
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return max(backoff, min(retry_after, s.retry_after_cap))
        return backoff

    def retrying(self) -> Retrying:
        """The retry policy for one lookup, from the current settings."""
        s = self.settings
        attempts = s.max_attempts if s.retries else 1
        return Retrying(
            stop=stop_after_attempt(attempts) | stop_before_delay(s.max_retry_time),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            sleep=self.sleep if self.sleep is not None else time.sleep,
            reraise=True,
        )

    # ------------------------------------------------------------------ lookup

    def forecast(self, city: str) -> Forecast:
        """The forecast for ``city``: fresh, else cached (with its age), else Unavailable.

        CityNotFound passes through: an unknown city is an answer, not an outage.
        """
        attempts = 0
        try:
            for attempt in self.retrying():
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    data = self._guarded(city)
        except CityNotFound:
            raise
        except pybreaker.CircuitBreakerError as exc:
            return self._fallback(city, f"circuit breaker open ({exc})", attempts)
        except UpstreamFailure as exc:
            return self._fallback(city, exc.reason, attempts)
        except requests.RequestException as exc:
            return self._fallback(city, f"{type(exc).__name__}: {exc}", attempts)
        with self._lock:
            self._cache[city] = _Cached(data, time.monotonic())
        outcome: Outcome = "ok" if attempts <= 1 else "ok_retry"
        return Forecast(data=data, source="upstream", attempts=attempts, outcome=outcome)

    def _fallback(self, city: str, reason: str, attempts: int) -> Forecast:
        with self._lock:
            cached = self._cache.get(city)
        if cached is None:
            raise Unavailable(reason, attempts)
        return Forecast(
            data=cached.data,
            source="cache",
            attempts=attempts,
            outcome="fallback",
            age=max(0.0, time.monotonic() - cached.at),
            reason=reason,
        )

    def cached_cities(self) -> int:
        with self._lock:
            return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
