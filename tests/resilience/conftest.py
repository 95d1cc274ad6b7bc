"""Resilience suites: the demo app (create_app) calls the fake weather service through
chaosproxy's pytest fixture, one suite per shipped scenario.

The app keeps the demo's own settings (its defaults, and ``DEMO_*`` environment
variables such as ``DEMO_RETRY_ATTEMPTS`` or ``DEMO_BREAKER_FAIL_MAX``), so breaking the
retry or breaker settings makes the matching suite fail, saying what it expected, what
the proxy saw, and the seed that replays it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from chaosproxy.demo_app import create_app
from chaosproxy.demo_app.state import DemoState
from chaosproxy.demo_app.upstream import create_upstream
from tests.support import serving

CITIES = ("berlin", "paris", "tokyo", "lima", "oslo")
#: The breaker the suites expect: open after this many failures in a row.
FAIL_MAX = 5


@pytest.fixture(scope="session")
def chaos_proxy_upstream() -> Iterator[str]:
    """The demo's fake weather service on a free loopback port."""
    with serving(create_upstream()) as url:
        yield url


@dataclass
class Lookup:
    """One ``GET /weather/<city>`` of the demo app, as its user sees it."""

    city: str
    status: int
    body: dict[str, Any]
    seconds: float
    started: float
    """Wall-clock start and end, to find the calls this lookup made (``calls.during``)."""
    ended: float

    @property
    def source(self) -> str | None:
        return self.body.get("source")

    def __str__(self) -> str:
        detail = self.body.get("reason") or self.body.get("error") or ""
        return (
            f"{self.city}: {self.status} from {self.source or '-'} after "
            f"{self.body.get('attempts', '?')} attempt(s) in {self.seconds * 1000:.0f}ms"
            + (f" ({detail})" if detail else "")
        )


class Demo:
    """The demo app under test, with the client (retries, breaker, cache) it builds."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.web = app.test_client()

    @property
    def state(self) -> DemoState:
        state: DemoState = self.app.extensions["chaosdemo"]
        return state

    @property
    def settings(self) -> Any:
        return self.state.client.settings

    @property
    def breaker(self) -> Any:
        return self.state.client.breaker

    def lookup(self, city: str) -> Lookup:
        wall, started = time.time(), time.perf_counter()
        response = self.web.get(f"/weather/{city}")
        seconds = time.perf_counter() - started
        return Lookup(city, response.status_code, response.get_json(), seconds, wall, time.time())

    def warm(self, cities: tuple[str, ...] = CITIES) -> None:
        """Fill the cache (run while the proxy passes everything through)."""
        for city in cities:
            result = self.lookup(city)
            assert result.status == 200 and result.source == "upstream", str(result)


@pytest.fixture
def make_demo(chaos_proxy: Any) -> Iterator[Callable[..., Demo]]:
    """Demo apps calling the upstream through the chaos proxy; ``config`` adds settings."""
    made: list[Demo] = []

    def make(**config: Any) -> Demo:
        app = create_app({"TESTING": True, "UPSTREAM_URL": chaos_proxy.url, **config})
        made.append(Demo(app))
        return made[-1]

    yield make
    for demo in made:
        demo.state.traffic.stop()


@pytest.fixture
def demo(make_demo: Callable[..., Demo]) -> Demo:
    return make_demo()


def warm_then_apply(demo: Demo, chaos_proxy: Any, scenario: str, cities: tuple[str, ...]) -> int:
    """Fill the app's cache while the proxy passes everything through, then apply
    ``scenario``. Returns how many calls came before: ``chaos_proxy.calls[before:]`` are
    the scenario's."""
    demo.warm(cities)
    before = len(chaos_proxy.decisions)
    chaos_proxy.apply(scenario)
    return before


def assert_from_cache(lookups: list[Lookup]) -> None:
    """Every lookup was answered, by the cache (the fallback)."""
    assert all(r.status == 200 and r.source == "cache" for r in lookups), explain(lookups)


def explain(lookups: list[Lookup]) -> str:
    return "\n".join(f"  {lookup}" for lookup in lookups)


def expect_attempts_per_lookup(calls: Any, lookups: list[Lookup], at_most: int) -> None:
    """Each lookup made at most ``at_most`` calls, and as many as the app says it made."""
    for lookup in lookups:
        made = calls.during(lookup.started, lookup.ended)
        made.expect_attempts(at_least=1, at_most=at_most)
        assert len(made) == lookup.body.get("attempts"), (
            f"the app reports {lookup.body.get('attempts')} attempts for {lookup}, "
            f"the proxy saw {len(made)}:\n{made.describe()}"
        )
