"""A loopback relay that fetches an answer from the real upstream and paces its body.

mitmproxy's stream callables are synchronous, so they cannot wait between writes. A
throttled flow is therefore sent (with public API only) to this relay on 127.0.0.1: the
request carries a one-time token naming the real upstream and the pacing. The relay
forwards the request, passes the answer's head on at once, then writes the body in
slices at the asked rate, reading from the upstream only as fast as it writes (so a
large body is never held in memory). mitmproxy streams what it gets to the client.
Plain asyncio + h11; no mitmproxy import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11

from chaosproxy.faults.base import Pacing

logger = logging.getLogger("chaosproxy")

HEADER = "x-chaosproxy-relay"
_HEADER = HEADER.encode()
_READ = 65536


def _noop(_: float) -> None:
    return None


@dataclass(eq=False)
class Route:
    """Where one throttled request really goes, and how its answer is paced."""

    host: str
    port: int
    pacing: Pacing
    ssl_context: ssl.SSLContext | None = None
    sni: str | None = None
    rule: str = ""
    on_wait: Callable[[float], None] = field(default=_noop)
    """Called with the seconds of each pause, for the decision log's added latency."""


class ClientGone(Exception):
    """mitmproxy closed the relay connection (its client left)."""


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(_READ))


class Relay:
    """Serves throttled requests on a loopback port, started on first use."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    async def start(self) -> int:
        """Listen on 127.0.0.1 (once); returns the port."""
        if self._server is None or self.port is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def add(self, route: Route) -> str:
        """Register a route; the request must carry the returned token in :data:`HEADER`."""
        token = secrets.token_hex(16)
        self._routes[token] = route
        return token

    def discard(self, token: str) -> None:
        self._routes.pop(token, None)

    @property
    def active(self) -> int:
        """Connections being served now."""
        return len(self._tasks)

    def close(self) -> None:
        """Stop listening and end every relayed exchange."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        self._routes.clear()

    # ------------------------------------------------------------------ serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = await _next_event(conn, reader)
                if not isinstance(event, h11.Request):
                    break
                await self._exchange(conn, event, reader, writer)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError, ClientGone, asyncio.IncompleteReadError) as exc:
            logger.debug("relay: exchange ended early: %r", exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(
        self,
        conn: h11.Connection,
        request: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        headers = [(k, v) for k, v in request.headers.raw_items() if k.lower() != _HEADER]
        tokens = [v for k, v in request.headers.raw_items() if k.lower() == _HEADER]
        route = self._routes.pop(tokens[0].decode(), None) if tokens else None
        if route is None:
            await self._refuse(conn, reader, writer, "unknown or expired relay token")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                route.host,
                route.port,
                ssl=route.ssl_context,
                server_hostname=(route.sni or route.host) if route.ssl_context else None,
            )
        except (OSError, ssl.SSLError) as exc:
            await self._refuse(
                conn, reader, writer, f"cannot reach {route.host}:{route.port}: {exc}"
            )
            return
        try:
            await self._forward(conn, request, headers, reader, writer, route, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _forward(
        self,
        conn: h11.Connection,
        request: h11.Request,
        headers: list[tuple[bytes, bytes]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        route: Route,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        up = h11.Connection(h11.CLIENT)
        up_writer.write(
            up.send(h11.Request(method=request.method, target=request.target, headers=headers))
            or b""
        )
        while True:  # the request body, as it comes
            event = await _next_event(conn, reader)
            if isinstance(event, h11.Data):
                up_writer.write(up.send(event) or b"")
                await up_writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                up_writer.write(up.send(event) or b"")
                await up_writer.drain()
                break
            else:
                raise h11.RemoteProtocolError(f"unexpected {event!r} in a request body")
        while True:  # the answer's head (interim 1xx answers passed on)
            event = await _next_event(up, up_reader)
            if isinstance(event, h11.InformationalResponse):
                writer.write(conn.send(event) or b"")
                continue
            if not isinstance(event, h11.Response):
                raise h11.RemoteProtocolError(f"the upstream sent {event!r} instead of an answer")
            break
        writer.write(
            conn.send(
                h11.Response(
                    status_code=event.status_code,
                    headers=event.headers.raw_items(),
                    reason=event.reason,
                )
            )
            or b""
        )
        await writer.drain()
        await _Pacer(route, reader, writer, conn).run(up, up_reader)

    async def _refuse(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        why: str,
    ) -> None:
        logger.warning("relay: %s", why)
        while not isinstance(await _next_event(conn, reader), h11.EndOfMessage):
            pass
        body = f"chaosproxy relay: {why}\n".encode()
        head = h11.Response(
            status_code=502,
            headers=[("content-type", "text/plain"), ("content-length", str(len(body)))],
        )
        writer.write(
            b"".join(conn.send(e) or b"" for e in (head, h11.Data(data=body), h11.EndOfMessage()))
        )
        await writer.drain()


class _Pacer:
    """Writes one answer's body on at the route's pace, watching for the client leaving."""

    def __init__(
        self,
        route: Route,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: h11.Connection,
    ) -> None:
        self.route = route
        self.pacing = route.pacing
        self.writer = writer
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        # mitmproxy sends nothing more until this answer is done: a read that completes
        # now means it closed the connection.
        self.gone: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(_READ))

    async def run(self, up: h11.Connection, up_reader: asyncio.StreamReader) -> None:
        try:
            start = self.loop.time()
            if self.pacing.first_byte:
                await self.pause(self.pacing.first_byte)
                start = self.loop.time()
            sent = 0
            while True:
                event = await self.upstream(up, up_reader)
                if isinstance(event, h11.EndOfMessage):
                    self.writer.write(self.conn.send(h11.EndOfMessage()) or b"")
                    await self.writer.drain()
                    return
                if not isinstance(event, h11.Data):
                    raise h11.RemoteProtocolError(f"unexpected {event!r} in the upstream's body")
                data = memoryview(event.data)
                for at in range(0, len(data), self.pacing.piece):
                    part = bytes(data[at : at + self.pacing.piece])
                    due = start + self.pacing.due(sent + len(part))
                    now = self.loop.time()
                    if due > now:
                        await self.pause(due - now)
                    else:  # behind (a slow upstream): go on from now, never catch up in a burst
                        start = now - self.pacing.due(sent + len(part))
                    self.writer.write(self.conn.send(h11.Data(data=part)) or b"")
                    await self.writer.drain()
                    sent += len(part)
        finally:
            if not self.gone.done():
                self.gone.cancel()
                # let the read unwind before the connection's next read (one reader only)
                await asyncio.wait([self.gone])

    async def upstream(self, up: h11.Connection, up_reader: asyncio.StreamReader) -> object:
        """The upstream's next event; ClientGone if mitmproxy closes the connection first."""
        read = asyncio.ensure_future(_next_event(up, up_reader))
        try:
            while not read.done():
                pending: list[asyncio.Future[Any]] = [read, self.gone]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    self.check_gone()
            return read.result()
        finally:
            if not read.done():
                read.cancel()

    async def pause(self, seconds: float) -> None:
        await asyncio.wait({self.gone}, timeout=seconds)
        self.check_gone()
        self.route.on_wait(seconds)

    def check_gone(self) -> None:
        if self.gone.done():
            with contextlib.suppress(asyncio.CancelledError):
                if self.gone.result():  # more data: pipelining, which mitmproxy never does
                    self.conn.receive_data(self.gone.result())
                    self.gone = self.loop.create_future()
                    return
            raise ClientGone(f"rule {self.route.rule}: the client left during the throttle")
