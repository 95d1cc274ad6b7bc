"""Outcomes per second and latency percentiles of the demo's lookups, for the dashboard."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from chaosproxy.demo_app.weather import OUTCOMES


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


class Metrics:
    """Thread-safe counters: one bucket per wall-clock second, kept for ``window`` seconds."""

    def __init__(
        self,
        window: int = 60,
        latency_window: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window = window
        self.latency_window = latency_window
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, dict[str, Any]] = {}
        self._latencies: deque[tuple[float, float]] = deque(maxlen=20000)
        self.totals: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def record(self, outcome: str, seconds: float) -> None:
        now = self.clock()
        second = int(now)
        with self._lock:
            bucket = self._buckets.get(second)
            if bucket is None:
                bucket = self._buckets[second] = {**dict.fromkeys(OUTCOMES, 0), "lat": []}
                for old in [s for s in self._buckets if s <= second - self.window]:
                    del self._buckets[old]
            bucket[outcome] += 1
            bucket["lat"].append(seconds)
            self.totals[outcome] += 1
            self._latencies.append((now, seconds))

    @staticmethod
    def _zeros() -> dict[str, Any]:
        return dict.fromkeys(OUTCOMES, 0)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._latencies.clear()
            self.totals = dict.fromkeys(OUTCOMES, 0)

    def snapshot(self) -> dict[str, Any]:
        """Totals, p50/p95 over the last ``latency_window`` s, and the per-second series
        (oldest first, the current unfinished second excluded, empty seconds as zeros)."""
        now = self.clock()
        current = int(now)
        with self._lock:
            recent = sorted(s for t, s in self._latencies if t >= now - self.latency_window)
            series: list[dict[str, Any]] = []
            for second in range(current - self.window, current):
                bucket = self._buckets.get(second)
                if bucket is None:
                    series.append({"t": second, **self._zeros()})
                    continue
                lat = sorted(bucket["lat"])
                series.append(
                    {
                        "t": second,
                        **{k: bucket[k] for k in OUTCOMES},
                        "p50_ms": _ms(percentile(lat, 50)),
                        "p95_ms": _ms(percentile(lat, 95)),
                    }
                )
            totals = dict(self.totals)
        return {
            "totals": totals,
            "latency": {
                "window_s": self.latency_window,
                "count": len(recent),
                "p50_ms": _ms(percentile(recent, 50)),
                "p95_ms": _ms(percentile(recent, 95)),
            },
            "series": series,
        }
