"""Hot reload (``--watch``): apply the scenario file again whenever it changes.

Polls the file's status on the proxy's event loop (no thread, no inotify dependency):
a change is loaded once the file has stayed the same for one poll, so an editor's
truncate-then-write is not read half-written. A broken edit is logged with its located
errors and the running scenario stays; the next good save applies.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.scenario import Scenario, ScenarioError

logger = logging.getLogger("chaosproxy")

POLL_INTERVAL = 0.2

Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Watcher:
    """Calls ``apply(scenario, source)`` when ``path`` changes to a valid scenario."""

    def __init__(
        self,
        path: str | Path,
        apply: Callable[[Scenario, str], object],
        describe_current: Callable[[], str] = lambda: "the previous one",
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self.apply = apply
        self.describe_current = describe_current
        self.interval = interval
        self._seen: Stamp = _stamp(self.path)
        self._settling = False
        self._digest = self._content_digest()
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.failures = 0

    def _content_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def poll(self) -> None:
        """Look once: note a change, or load one that has settled since the last poll."""
        stamp = _stamp(self.path)
        if stamp != self._seen:
            self._seen = stamp
            self._settling = True
            return
        if not self._settling:
            return
        self._settling = False
        if stamp is None:
            logger.error(
                "%s: file: gone (keeping scenario %s; it applies again when the file is back)",
                self.path,
                self.describe_current(),
            )
            self.failures += 1
            return
        digest = self._content_digest()
        if digest == self._digest:
            return  # touched, not changed
        self._digest = digest
        try:
            scenario = scenario_mod.load_file(self.path)
        except ScenarioError as exc:
            self.failures += 1
            logger.error(
                "%s changed but is invalid (keeping scenario %s):\n%s",
                self.path,
                self.describe_current(),
                exc,
            )
            return
        self.reloads += 1
        logger.info("%s changed: reloading", self.path)
        self.apply(scenario, str(self.path))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.poll()
            except Exception:  # never let a surprise end the watching
                logger.exception("watching %s failed", self.path)

    def start(self) -> None:
        """Start polling on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
