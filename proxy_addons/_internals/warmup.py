"""Upstream connections opened while a delayed request waits (``chaosproxy run`` only).

mitmproxy opens a client's upstream connection when its first request is ready to go,
and in ``chaosproxy run`` only then (so that faults still answer while the upstream is
down). A request held by a ``latency`` fault would open it after its delay, on top of
the delay; under a burst of new connections, all of them at the same moment, queued one
behind the other. Instead, when such a request will need a new upstream connection, the
TCP connection is opened during the last :data:`LEAD` seconds of its wait and handed to
mitmproxy when it asks for it, so the request goes out as soon as the delay ends.

mitmproxy still runs its ``server_connect`` and ``server_connected`` hooks, TLS to the
upstream, and its errors: a connect that failed early fails mitmproxy's connect with the
same error (it is not tried twice). What differs: the upstream sees the TCP connection
before ``server_connect`` runs (an addon that vetoes there cannot keep it from seeing
one), and the flow's ``timestamp_tcp_setup`` shows no connect time. A connection the
upstream closed or wrote to in the meantime, or to another address than mitmproxy asks
for, is not used: mitmproxy connects as usual. One not asked for (the client left, the
flow was killed) is closed when its client disconnects, or :data:`KEEP` seconds after
its delay ended. :func:`install` wraps mitmproxy's ``ConnectionHandler.open_connection``
(internal API, the same in mitmproxy 11 and 12) and the ``asyncio`` its server module
calls ``open_connection`` through; without it (``PATCH`` not applied), :func:`prepare`
does nothing and mitmproxy connects when the request goes out.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
import types
from typing import Any

from chaosproxy.proxy_addons._internals import Patch, missing_attributes

#: How long before a delay ends its upstream connection is opened (seconds).
LEAD = 0.05
#: How long after the delay ended an unused early connection is kept (seconds).
KEEP = 1.0

Address = tuple[str, int]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

_installed: list[bool] = []
#: client connection id -> upstream connections mitmproxy is opening or has open for it
_upstreams: dict[str, int] = {}
#: client connection id -> upstream address -> the connection opened early for it
_early: dict[str, dict[Address, Early]] = {}
#: the early connection for the ``open_connection`` running in this task, if any
_handoff: contextvars.ContextVar[Early | None] = contextvars.ContextVar(
    "chaosproxy_early_connection", default=None
)


class Early:
    """One upstream connection opened ahead of its request."""

    __slots__ = ("address", "task", "timer", "expiry", "used")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.task: asyncio.Task[Streams] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.used = False

    def schedule(self, client_id: str, remaining: float) -> None:
        """Open it ``LEAD`` before ``remaining`` seconds have passed; give up ``KEEP``
        after (unless it was opened already: then only the giving up moves)."""
        loop = asyncio.get_running_loop()
        if self.task is None:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = loop.call_later(max(0.0, remaining - LEAD), self.start)
        if self.expiry is not None:
            self.expiry.cancel()
        self.expiry = loop.call_later(remaining + KEEP, _expire, client_id, self)

    def start(self) -> None:
        if not self.used and self.task is None:
            self.task = asyncio.ensure_future(asyncio.open_connection(*self.address))
            self.task.add_done_callback(_retrieve)

    async def take(self) -> Streams | None:
        """The open connection, if it opened and is still unused by the upstream; None
        otherwise (and None again: it is handed over once). Raises the OSError its
        connect failed with, as mitmproxy's own connect would (not tried twice)."""
        if self.used:
            return None
        self.used = True
        self._stop_timers()
        task = self.task
        if task is None or task.cancelled():
            return None
        reader, writer = await task
        if reader.at_eof() or reader.exception() or len(getattr(reader, "_buffer", b"")):
            # the upstream closed it, or said something before any request (an idle
            # timeout's 408, say): not a connection to send a request on
            writer.close()
            return None
        return reader, writer

    def close(self) -> None:
        """Give up on it (idempotent; a connection already taken is mitmproxy's)."""
        if self.used:
            return
        self.used = True
        self._stop_timers()
        task = self.task
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled() and task.exception() is None:
            task.result()[1].close()

    def _stop_timers(self) -> None:
        for timer in (self.timer, self.expiry):
            if timer is not None:
                timer.cancel()


def _retrieve(task: asyncio.Task[Streams]) -> None:
    """Mark a failed early connect's error as seen (it is reported, if at all, by the
    ``open_connection`` it is handed to): no "exception never retrieved" at exit."""
    if not task.cancelled():
        task.exception()


def prepare(client_id: str, address: Address, deadline: float) -> None:
    """A request of ``client_id`` goes to ``address`` when its delay ends at ``deadline``
    (wall clock): open the connection it will need ahead, unless it has one. A later
    wait of the same request moves the opening later."""
    if not _installed or _upstreams.get(client_id):
        return
    remaining = deadline - time.time()
    if remaining <= 0:
        return
    ahead = _early.setdefault(client_id, {})
    early = ahead.get(address)
    if early is None:
        early = ahead[address] = Early(address)
    early.schedule(client_id, remaining)


def _unpark(client_id: str, address: Address) -> Early | None:
    """Remove and return the early connection for ``client_id`` and ``address``."""
    ahead = _early.get(client_id)
    if ahead is None:
        return None
    early = ahead.pop(address, None)
    if not ahead:
        del _early[client_id]
    return early


def _expire(client_id: str, early: Early) -> None:
    ahead = _early.get(client_id)
    if ahead is not None and ahead.get(early.address) is early:
        _unpark(client_id, early.address)
    early.close()


def discard(client_id: str) -> None:
    """The client disconnected: close what was opened for it and not used."""
    for early in _early.pop(client_id, {}).values():
        early.close()


def check() -> str | None:
    from mitmproxy.proxy import server

    problem = missing_attributes(server, "ConnectionHandler", "asyncio")
    if problem:
        return problem
    opener = getattr(server.ConnectionHandler, "open_connection", None)
    if opener is None or not inspect.iscoroutinefunction(opener):
        return "ConnectionHandler.open_connection is not a coroutine function"
    if list(inspect.signature(opener).parameters) != ["self", "command"]:
        return "ConnectionHandler.open_connection(self, command) changed its signature"
    if server.asyncio is not asyncio and not isinstance(server.asyncio, _AsyncioWithHandoff):
        return "mitmproxy.proxy.server.asyncio is not the asyncio module"
    if "open_connection" not in opener.__code__.co_names:
        return "ConnectionHandler.open_connection no longer calls asyncio.open_connection"
    return None


def install() -> bool:
    """Hand early connections to mitmproxy's ``ConnectionHandler.open_connection``."""
    from mitmproxy.proxy import server

    handler = server.ConnectionHandler
    opener = handler.open_connection
    if getattr(opener, "_chaosproxy", False):
        return False

    async def open_connection(self: Any, command: Any) -> None:
        client = self.client.id
        _upstreams[client] = _upstreams.get(client, 0) + 1
        early = _unpark(client, command.connection.address) if _early else None
        token = _handoff.set(early)
        try:
            await opener(self, command)
        finally:
            _handoff.reset(token)
            if early is not None:
                early.close()  # not taken (say, killed in server_connect): closed
            left = _upstreams.pop(client, 1) - 1
            if left > 0:
                _upstreams[client] = left

    open_connection._chaosproxy = True  # type: ignore[attr-defined]
    handler.open_connection = open_connection  # type: ignore[method-assign]
    server.asyncio = _AsyncioWithHandoff()
    _installed.append(True)
    return True


async def _open_connection(
    host: Any = None, port: Any = None, *, local_addr: Any = None, **kwargs: Any
) -> Streams:
    """``asyncio.open_connection`` for mitmproxy's server module: the early connection
    of the ``open_connection`` that calls it, when there is one and it is usable."""
    early = _handoff.get()
    if early is not None:
        _handoff.set(None)
        if local_addr is None and (host, port) == early.address:
            # mitmproxy registers the connection's task only once this call has
            # suspended (with Python 3.12's eager tasks, it runs up to here at once)
            await asyncio.sleep(0)
            streams = await early.take()
            if streams is not None:
                return streams
    return await asyncio.open_connection(host, port, local_addr=local_addr, **kwargs)


class _AsyncioWithHandoff(types.ModuleType):
    """The ``asyncio`` module as mitmproxy's server module sees it: the same, but for
    ``open_connection``."""

    def __init__(self) -> None:
        super().__init__("asyncio")
        self.open_connection = _open_connection

    def __getattr__(self, name: str) -> Any:
        value = getattr(asyncio, name)
        setattr(self, name, value)
        return value


PATCH = Patch(
    name="early_upstream",
    target="mitmproxy.proxy.server.ConnectionHandler.open_connection (and that module's asyncio)",
    check=lambda: None if _installed else check(),
    apply=lambda _: install(),
    fallback="a delayed request opens its upstream connection after its delay",
)
