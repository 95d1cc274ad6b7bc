"""Built-in traffic: N lookups per second from the server side, so a room needs nothing else."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("chaosproxy.demo_app.traffic")


class Traffic:
    """A ticker thread that hands one city per tick to a fixed pool of daemon workers.

    When every worker is busy (a hanging upstream, no timeouts), ticks are counted as
    skipped instead of piling up. Workers are daemon threads, so a lookup stuck on a
    socket never keeps the process alive.
    """

    MAX_RATE = 100.0

    def __init__(
        self,
        work: Callable[[str], object],
        cities: Sequence[str],
        workers: int = 16,
        rate: float = 5.0,
    ) -> None:
        if not cities:
            raise ValueError("traffic needs at least one city")
        self._work = work
        self._cities = itertools.cycle(list(cities))
        self.rate = rate
        self.workers = workers
        self.sent = 0
        self.skipped = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[str] = queue.Queue(maxsize=workers)
        self._stop: threading.Event | None = None
        self._ticker: threading.Thread | None = None
        self._pool_started = False

    @property
    def running(self) -> bool:
        return self._ticker is not None and self._ticker.is_alive()

    def set_rate(self, rate: float) -> None:
        if not 0 < rate <= self.MAX_RATE:
            raise ValueError(f"rate must be above 0 and at most {self.MAX_RATE:g} per second")
        self.rate = float(rate)

    def start(self) -> None:
        if self.running:
            return
        if not self._pool_started:
            for n in range(self.workers):
                threading.Thread(target=self._worker, name=f"traffic-{n}", daemon=True).start()
            self._pool_started = True
        self._stop = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick, args=(self._stop,), name="traffic", daemon=True
        )
        self._ticker.start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        self._ticker = None

    def reset_counts(self) -> None:
        """Zero the sent and skipped counts (the dashboard's "Reset counters")."""
        with self._lock:
            self.sent = 0
            self.skipped = 0

    def state(self) -> dict[str, Any]:
        with self._lock:
            busy = self._busy
        return {
            "running": self.running,
            "rate": self.rate,
            "in_flight": busy,
            "sent": self.sent,
            "skipped": self.skipped,
            "workers": self.workers,
        }

    def _tick(self, stop: threading.Event) -> None:
        due = time.monotonic()
        while not stop.is_set():
            try:
                self._queue.put_nowait(next(self._cities))
                self.sent += 1
            except queue.Full:
                self.skipped += 1
            due += 1.0 / self.rate
            delay = due - time.monotonic()
            if delay < -1.0:  # fell far behind (a paused machine): do not burst to catch up
                due = time.monotonic()
            stop.wait(max(0.0, delay))

    def _worker(self) -> None:
        while True:
            city = self._queue.get()
            with self._lock:
                self._busy += 1
            try:
                self._work(city)
            except Exception:  # one failed lookup must not kill the worker
                logger.exception("traffic lookup for %s failed", city)
            finally:
                with self._lock:
                    self._busy -= 1
