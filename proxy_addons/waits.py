"""Flows waiting in a fault (delayed or held), released early when their client leaves."""

from __future__ import annotations

import asyncio

from chaosproxy.proxy_addons.wire import resolve_future, wait_future


class ClientWaits:
    """The waits of each client connection, by client id."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[bool | None]]] = {}

    @property
    def count(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def wait(
        self, loop: asyncio.AbstractEventLoop, client_id: str, timeout: float | None
    ) -> bool | None:
        """Wait ``timeout`` seconds (None: forever). True when the time passed, False when the
        client disconnected first, None when the proxy is stopping."""
        fut = wait_future(loop, timeout)
        waiters = self._waiters.setdefault(client_id, set())
        waiters.add(fut)
        try:
            return await fut
        finally:
            waiters.discard(fut)
            if not waiters and self._waiters.get(client_id) is waiters:
                del self._waiters[client_id]

    def client_left(self, client_id: str) -> None:
        for fut in self._waiters.pop(client_id, ()):
            resolve_future(fut, False)

    def release_all(self) -> None:
        """End every wait: the proxy is stopping, so held flows are let go (and closed)."""
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for fut in futures:
                resolve_future(fut, None)
