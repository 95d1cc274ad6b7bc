"""Metrics (outcomes per second, percentiles) and the built-in traffic generator."""

from __future__ import annotations

import threading

import pytest

from chaosproxy.demo_app.metrics import Metrics, percentile
from chaosproxy.demo_app.traffic import Traffic
from tests.support import wait_until


def test_percentile_is_nearest_rank() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_series_has_one_bucket_per_second_with_its_own_percentiles() -> None:
    now = [1000.2]
    metrics = Metrics(window=5, latency_window=10, clock=lambda: now[0])
    metrics.record("ok", 0.010)
    metrics.record("ok_retry", 0.200)
    now[0] = 1002.5
    metrics.record("fallback", 0.001)
    now[0] = 1003.1
    snap = metrics.snapshot()
    series = {point["t"]: point for point in snap["series"]}
    assert sorted(series) == [998, 999, 1000, 1001, 1002]  # the current second is not done
    assert series[1000]["ok"] == 1 and series[1000]["ok_retry"] == 1
    assert series[1000]["p50_ms"] == 10.0 and series[1000]["p95_ms"] == 200.0
    assert series[1001] == {"t": 1001, "ok": 0, "ok_retry": 0, "fallback": 0, "error": 0}
    assert series[1002]["fallback"] == 1
    assert snap["totals"] == {"ok": 1, "ok_retry": 1, "fallback": 1, "error": 0}
    assert snap["latency"]["count"] == 3 and snap["latency"]["p95_ms"] == 200.0
    now[0] = 1020.0  # everything is older than both windows now
    later = metrics.snapshot()
    assert later["latency"]["count"] == 0 and later["latency"]["p50_ms"] is None
    assert all(point["ok"] == 0 for point in later["series"])
    assert later["totals"]["ok"] == 1  # totals are since the start (or the last reset)
    metrics.reset()
    assert metrics.snapshot()["totals"]["ok"] == 0


def test_traffic_skips_ticks_when_every_worker_is_busy() -> None:
    release = threading.Event()
    started: list[str] = []

    def work(city: str) -> None:
        started.append(city)
        release.wait(30)

    traffic = Traffic(work, ["berlin", "paris"], workers=2, rate=100)
    traffic.start()
    try:
        wait_until(lambda: traffic.state()["skipped"] > 0, timeout=20)
        state = traffic.state()
        assert state["running"] and state["in_flight"] == 2
        assert started[:2] == ["berlin", "paris"]
    finally:
        traffic.stop()
        release.set()
    assert not traffic.running
    wait_until(lambda: traffic.state()["in_flight"] == 0, timeout=20)


def test_traffic_rate_is_bounded() -> None:
    traffic = Traffic(lambda city: None, ["oslo"])
    for bad in (0, -1, 1000):
        with pytest.raises(ValueError, match="rate must be above 0"):
            traffic.set_rate(bad)
    traffic.set_rate(2.5)
    assert traffic.state()["rate"] == 2.5
    with pytest.raises(ValueError, match="at least one city"):
        Traffic(lambda city: None, [])
