"""The start-up gate: requests that arrive while the proxy is held wait until it opens.

``serve()`` holds the proxy until it has announced itself (its engine started);
``mitmdump -s`` never holds it.
"""

from __future__ import annotations

import asyncio


class StartupGate:
    """Open by default; :meth:`hold` closes it until :meth:`open`."""

    def __init__(self) -> None:
        self.is_open = True
        self._waiters: list[asyncio.Future[None]] = []

    def hold(self) -> None:
        self.is_open = False

    def open(self) -> None:
        """Let requests through (those that arrived while held wait for this)."""
        self.is_open = True
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self) -> None:
        """Return once the gate is open."""
        if not self.is_open:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut
