"""The phase timeline: a timer on the proxy's loop for the next phase boundary or ttl expiry.

The engine knows when its scenario changes next (a phase ends, a ttl runs out); this
arms one timer for that moment and ticks the engine then. Anything that moves the clock
(apply, jump, reset, an engine event) calls :meth:`PhaseTimeline.reschedule`, from any
thread.
"""

from __future__ import annotations

import asyncio
import logging

from chaosproxy.core.engine import Engine, Event

logger = logging.getLogger("chaosproxy")


class PhaseTimeline:
    """Ticks ``engine`` at its next change, once started on a loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the engine's clock (logs "phase X begins") and arm the timer."""
        self._loop = loop
        self.engine.start()
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_event(self, event: Event) -> None:
        """The engine's ``on_event``: log the change and re-arm."""
        logger.info("%s", event.message)
        self.reschedule()

    def reschedule(self) -> None:
        """Re-arm the timer for the next phase boundary or ttl expiry (thread-safe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule()
        else:
            loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        delay = self.engine.next_change_in()
        if delay is not None and self._loop is not None:
            self._timer = self._loop.call_later(delay + 0.001, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.engine.tick()
        if self._timer is None:
            self._schedule()
