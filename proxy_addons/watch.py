"""Hot reload (``--watch``): apply the scenario file again whenever it changes.

Polls the file's status on the proxy's event loop (no inotify dependency): a change is
loaded once the file has stayed the same for one poll, so an editor's truncate-then-write
is not read half-written. A broken edit is logged with its located errors and the running
scenario stays; the next good save applies. The file is checked before it is read (a
regular file of at most 1 MB: a FIFO put in its place is a warning, never a wait), and
parsed and applied off the loop (:mod:`chaosproxy.control.offload`), so a large scenario
does not pause the requests flowing through the proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from chaosproxy.control import offload
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core import yamlsource
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


def _read(path: Path) -> str | None:
    """The file's text within the limits, None when it cannot be read (see :meth:`poll`)."""
    try:
        return yamlsource.read_text(path)
    except (OSError, yamlsource.FileRefused):
        return None


class Watcher:
    """Calls ``apply(scenario, source)`` (in a thread) when ``path`` changes to a valid
    scenario."""

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
        text = _read(self.path)
        self._digest = _digest(text) if text is not None else None
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.failures = 0

    async def poll(self) -> None:
        """Look once: note a change, or load one that has settled since the last poll."""
        stamp = _stamp(self.path)
        if stamp != self._seen:
            self._seen = stamp
            self._settling = True
            return
        if not self._settling:
            return
        self._settling = False
        try:
            text = yamlsource.read_text(self.path)
        except FileNotFoundError:
            self._refuse("file: gone", "it applies again when the file is back", logging.ERROR)
            return
        except (OSError, yamlsource.FileRefused) as exc:
            self._digest = None  # the same good text, back in place, applies again
            self._refuse(f"file: {exc}", "it applies again when a scenario file is back")
            return
        digest = _digest(text)
        if digest == self._digest:
            return  # touched, not changed
        self._digest = digest
        try:
            scenario = await offload.run(
                scenario_mod.load_text, text, str(self.path), self.path.stem, size=len(text)
            )
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
        await asyncio.to_thread(self.apply, scenario, str(self.path))

    def _refuse(self, problem: str, then: str, level: int = logging.WARNING) -> None:
        self.failures += 1
        current = self.describe_current()
        logger.log(level, "%s: %s (keeping scenario %s; %s)", self.path, problem, current, then)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # never let a surprise end the watching
                logger.exception("watching %s failed", self.path)

    def start(self) -> None:
        """Start polling on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())
            offload.acquire()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            # the last user ends the loading process: a load in progress must not delay the
            # proxy's exit, nor may it break another in-process proxy's load
            offload.release()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
