"""The demo app through a real chaosproxy in front of the real fake upstream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from chaosproxy.testing.api import ChaosProxy
from tests.demo.conftest import demo
from tests.support import wait_until


@pytest.fixture
def proxy(fake_upstream: str) -> Iterator[ChaosProxy]:
    with ChaosProxy(upstream=fake_upstream, scenario="healthy", seed=1) as running:
        yield running


@pytest.fixture
def through_proxy(make_app: Callable[..., Flask], proxy: ChaosProxy) -> Callable[..., Flask]:
    def make(**config: object) -> Flask:
        app = make_app(UPSTREAM_URL=proxy.url, **config)
        demo(app).client.sleep = time.sleep  # real backoff on the wire
        return app

    return make


def test_healthy_forecast_through_the_proxy(through_proxy: Callable[..., Flask]) -> None:
    client = through_proxy().test_client()
    answer = client.get("/weather/berlin")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["source"] == "upstream" and body["forecast"]["city"] == "berlin"


def test_outage_opens_the_breaker_and_the_cache_answers_fast(
    through_proxy: Callable[..., Flask], proxy: ChaosProxy
) -> None:
    app = through_proxy(BREAKER_RESET_TIMEOUT=1.0)
    client = app.test_client()
    assert client.get("/weather/berlin").get_json()["source"] == "upstream"
    proxy.apply("outage")
    statuses = [client.get("/weather/berlin").get_json()["source"] for _ in range(2)]
    assert statuses == ["cache", "cache"]  # 3 resets, then 2 more: the breaker opens
    assert client.get("/status").get_json()["breaker"]["state"] == "open"
    started = time.perf_counter()
    answer = client.get("/weather/berlin")
    elapsed = time.perf_counter() - started
    assert answer.get_json()["source"] == "cache"
    assert elapsed < 0.5  # a few ms: the upstream is not even tried
    assert client.get("/weather/paris").status_code == 503  # nothing cached for paris
    injected = proxy.stats["injected"]
    proxy.apply("healthy")

    def closed() -> bool:
        client.get("/weather/berlin")
        return bool(client.get("/status").get_json()["breaker"]["state"] == "closed")

    wait_until(closed, timeout=15, interval=0.1)
    assert injected == 5
    log = [(t["from"], t["to"]) for t in demo(app).breaker_status()["transitions"]]
    assert log == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_without_the_breaker_every_request_pays_all_its_retries(
    through_proxy: Callable[..., Flask], proxy: ChaosProxy
) -> None:
    app = through_proxy(BACKOFF_INITIAL=0.05, BACKOFF_MAX=0.2)
    client = app.test_client()
    client.post("/settings", json={"breaker": False})
    proxy.apply("outage")
    for _ in range(3):
        body = client.get("/weather/berlin").get_json()
        assert body["attempts"] == 3
    assert proxy.stats["injected"] == 9
    assert demo(app).client.breaker.current_state == "closed"


def test_flaky_is_hidden_by_retries(through_proxy: Callable[..., Flask], proxy: ChaosProxy) -> None:
    app = through_proxy(BACKOFF_INITIAL=0.02, RETRY_AFTER_CAP=0.05)
    client = app.test_client()
    proxy.apply("flaky", seed=3)
    outcomes = [client.get("/weather/oslo").get_json()["outcome"] for _ in range(20)]
    assert "ok_retry" in outcomes
    assert set(outcomes) <= {"ok", "ok_retry"}


def test_slow_then_fail_with_a_tight_read_timeout(
    through_proxy: Callable[..., Flask], proxy: ChaosProxy
) -> None:
    app = through_proxy(READ_TIMEOUT=0.3, BACKOFF_INITIAL=0.01, RETRY_ATTEMPTS=2)
    client = app.test_client()
    proxy.apply("slow-then-fail")
    started = time.perf_counter()
    answer = client.get("/weather/lima")
    elapsed = time.perf_counter() - started
    assert answer.status_code == 503
    assert "ReadTimeout" in answer.get_json()["reason"]
    assert elapsed < 1.5  # two 0.3 s timeouts, not two 1.5 s waits


@pytest.mark.parametrize("mode", ["invalid_json", "wrong_content_type", "truncate"])
def test_broken_bodies_from_the_proxy_are_refused(
    through_proxy: Callable[..., Flask], proxy: ChaosProxy, mode: str
) -> None:
    app = through_proxy(BACKOFF_INITIAL=0.01)
    client = app.test_client()
    assert client.get("/weather/tokyo").get_json()["source"] == "upstream"
    proxy.apply(
        {"name": f"broken-{mode}", "rules": [{"fault": {"type": "malformed", "mode": mode}}]}
    )
    answer = client.get("/weather/tokyo")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["source"] == "cache", body
    assert body["forecast"]["city"] == "tokyo"


def test_traffic_through_the_proxy_trips_the_breaker(
    through_proxy: Callable[..., Flask], proxy: ChaosProxy
) -> None:
    app = through_proxy(TRAFFIC_CITIES=["berlin", "paris"])
    client = app.test_client()
    client.post("/traffic", json={"running": True, "rate": 20})
    wait_until(lambda: demo(app).metrics.totals["ok"] >= 5, timeout=20)
    opened_at = time.monotonic()
    proxy.apply("outage")
    wait_until(lambda: demo(app).client.breaker.current_state == "open", timeout=20)
    took = time.monotonic() - opened_at
    wait_until(lambda: demo(app).metrics.totals["fallback"] >= 5, timeout=20)
    client.post("/traffic", json={"running": False})
    assert took < 15
