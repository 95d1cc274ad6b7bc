"""Independent clients with known settings, each one logical call to ``BASE/json``.

Each ``Client`` builds a fresh call for a proxy URL (fresh retry state, fresh breaker),
and says what it was configured with, in the assessment's terms, to compare.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PATH = "/json"
TIMEOUT = 0.5  # the clients' read timeout (s)


class Retryable(Exception):
    """A 5xx or 429 answer, raised so that retry libraries retry it."""


def _checked(response: Any) -> Any:
    status = getattr(response, "status_code", 0)
    if status >= 500 or status == 429:
        raise Retryable(f"upstream answered {status}")
    return response


def _get(url: str) -> Any:
    import requests

    return requests.get(url, timeout=TIMEOUT)


@dataclass(frozen=True)
class Client:
    """A client and the policy it was configured with (None: not compared)."""

    name: str
    make: Callable[[str], Callable[[], Any]] | None
    configured: dict[str, Any]
    command: list[str] | None = None
    full: bool = False  # the breaker probe too
    extra: dict[str, Any] = field(default_factory=dict)


def urllib3_retry(base: str) -> Callable[[], Any]:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    retry = Retry(
        total=3,
        backoff_factor=0.1,
        status_forcelist=[500, 502, 503, 504],
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return lambda: session.get(base + PATH, timeout=TIMEOUT)


def tenacity_exponential(base: str) -> Callable[[], Any]:
    import requests
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential,
    )

    def call() -> Any:
        for attempt in Retrying(
            stop=stop_after_attempt(4),
            wait=wait_exponential(multiplier=0.1, max=10),
            retry=retry_if_exception_type((Retryable, requests.RequestException)),
            reraise=True,
        ):
            with attempt:
                return _checked(_get(base + PATH))
        return None

    return call


def backoff_constant(base: str) -> Callable[[], Any]:
    import backoff
    import requests

    @backoff.on_exception(
        backoff.constant,
        (Retryable, requests.RequestException),
        interval=0.15,
        max_tries=3,
        jitter=None,
    )
    def call() -> Any:
        return _checked(_get(base + PATH))

    return call


class _ThreadRandom:
    """Stands in for the ``random`` module inside a client library: each thread that was
    given a generator draws from it, others from the module. The library's algorithm is
    untouched; only where its jitter comes from is seeded, so the test is reproducible
    (three assessments run at once, each with its own client)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def use(self, rng: random.Random) -> None:
        self._local.rng = rng

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(self._local, "rng", None) or random, name)


_STAMINA_RANDOM = _ThreadRandom()
_stamina_seeds = itertools.count(1)
_stamina_lock = threading.Lock()


def stamina_jittered(base: str) -> Callable[[], Any]:
    import requests
    import stamina
    import stamina._core

    with _stamina_lock:
        stamina._core.random = _STAMINA_RANDOM  # type: ignore[attr-defined]
        rng = random.Random(next(_stamina_seeds))  # this client's own, seeded jitter

    @stamina.retry(
        on=(Retryable, requests.RequestException),
        attempts=3,
        timeout=None,
        wait_initial=0.4,
        wait_max=5.0,
        wait_jitter=0.2,
        wait_exp_base=2,
    )
    def attempt() -> Any:
        return _checked(_get(base + PATH))

    def call() -> Any:
        _STAMINA_RANDOM.use(rng)  # the thread the assessment runs this call in
        return attempt()

    return call


def httpx_retry_transport(base: str) -> Callable[[], Any]:
    import httpx
    from httpx_retries import Retry, RetryTransport

    retry = Retry(total=3, backoff_factor=0.05, backoff_jitter=0.0, respect_retry_after_header=True)
    client = httpx.Client(transport=RetryTransport(retry=retry), timeout=httpx.Timeout(TIMEOUT))
    return lambda: client.get(base + PATH)


def plain_requests(base: str) -> Callable[[], Any]:
    return lambda: _get(base + PATH)


def pybreaker_client(base: str) -> Callable[[], Any]:
    import pybreaker

    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=1.0)
    return lambda: breaker.call(lambda: _checked(_get(base + PATH)))


def circuitbreaker_client(base: str) -> Callable[[], Any]:
    from circuitbreaker import CircuitBreaker

    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=1, expected_exception=Exception)
    return breaker(lambda: _checked(_get(base + PATH)))


CLIENTS = [
    Client(
        "urllib3-Retry",
        urllib3_retry,
        # urllib3 2: the first retry at once, then backoff_factor * 2**(n-1): 0.2, 0.4
        {
            "attempts": 4,
            "kind": "exponential",
            "first_immediate": True,
            "base_s": 0.2,
            "multiplier": 2.0,
            "jitter": False,
            "retry_after": True,
            "retries_4xx": False,
            "timeout_s": TIMEOUT,
        },
    ),
    Client(
        "tenacity",
        tenacity_exponential,
        {
            "attempts": 4,
            "kind": "exponential",
            "base_s": 0.1,
            "multiplier": 2.0,
            "jitter": False,
            "retry_after": False,
            "retries_4xx": False,
            "timeout_s": TIMEOUT,
        },
    ),
    Client(
        "backoff",
        backoff_constant,
        {
            "attempts": 3,
            "kind": "constant",
            "base_s": 0.15,
            "jitter": False,
            "retry_after": False,
            "retries_4xx": False,
            "timeout_s": TIMEOUT,
        },
    ),
    Client(
        "stamina",
        stamina_jittered,
        # wait_initial * 2**(n-1) + uniform(0, wait_jitter): jitter half the first wait
        {
            "attempts": 3,
            "kind": "exponential",
            "base_s": 0.4,
            "multiplier": 2.0,
            "jitter": True,
            "retry_after": False,
            "retries_4xx": False,
            "timeout_s": TIMEOUT,
        },
    ),
    Client(
        "httpx-retries",
        httpx_retry_transport,
        # backoff_factor * 2**n from the first retry on: 0.1, 0.2, 0.4
        {
            "attempts": 4,
            "kind": "exponential",
            "base_s": 0.1,
            "multiplier": 2.0,
            "jitter": False,
            "retry_after": True,
            "retries_4xx": False,
            "timeout_s": TIMEOUT,
        },
    ),
    Client(
        "plain-requests",
        plain_requests,
        {
            "attempts": 1,
            "kind": "none",
            "retry_after": None,
            "retries_4xx": False,
            "retries_on_reset": False,
            "timeout_s": TIMEOUT,
        },
    ),
    Client(
        "pybreaker",
        pybreaker_client,
        {"attempts": 1, "opens_after": 3, "reset_s": 1.0, "half_open_probes": 1},
        full=True,
    ),
    Client(
        "circuitbreaker",
        circuitbreaker_client,
        {"attempts": 1, "opens_after": 3, "reset_s": 1.0, "half_open_probes": 1},
        full=True,
    ),
]

#: curl --retry 2: waits 1 s, then 2 s; -m 1: each transfer's whole time
CURL = Client(
    "curl --retry",
    None,
    {
        "attempts": 3,
        "kind": "exponential",
        "base_s": 1.0,
        "multiplier": 2.0,
        "jitter": False,
        "retries_4xx": False,
        "timeout_s": 1.0,
    },
    command=["curl", "-s", "-f", "-o", "/dev/null", "-m", "1", "--retry", "2"],
)
