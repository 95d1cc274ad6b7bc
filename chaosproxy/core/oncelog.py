"""A warning that request data can trigger: counted every time, logged at most once a
minute (with the count since the last line), so a client cannot flood the log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class CountedWarning:
    """``note()`` counts one occurrence; a line is logged at most every ``every`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.message = message
        self.every = every
        self.count = 0
        self._clock = clock
        self._logged_at: float | None = None
        self._logged_count = 0
        self._lock = threading.Lock()

    def note(self) -> None:
        with self._lock:
            self.count += 1
            now = self._clock()
            if self._logged_at is not None and now - self._logged_at < self.every:
                return
            since = self.count - self._logged_count
            self._logged_at, self._logged_count = now, self.count
        self.logger.warning(
            "%s (%d time%s since the last such line, %d in all; logged at most every %gs)",
            self.message,
            since,
            "" if since == 1 else "s",
            self.count,
            self.every,
        )
