"""A loopback relay that fetches an answer from the real upstream and paces its body.

mitmproxy's stream callables are synchronous, so they cannot wait between writes. A
throttled flow is therefore sent (with public API only) to this relay on 127.0.0.1: the
request carries a one-time token naming the real upstream and the pacing. The relay
forwards the request, passes the answer's head on at once, then writes the body in
slices at the asked rate, reading from the upstream only as fast as it writes (so a
large body is never held in memory). mitmproxy streams what it gets to the client.
Served by the control package's :class:`~chaosproxy.control.http.H11Server` (asyncio +
h11); no mitmproxy import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11

from chaosproxy.control.http import READ_SIZE, Exchange, H11Server, next_event
from chaosproxy.core.fault import Pacing
from chaosproxy.core.oncelog import CountedWarning
from chaosproxy.core.streams import End, StreamPlan, Unit, counter_for

logger = logging.getLogger("chaosproxy")

HEADER = "x-chaosproxy-relay"
#: ``truncated``: the longest wait for the data the half chunk announces, at the point
NEXT_DATA_WAIT = 2.0
_HEADER = HEADER.encode()


def _noop(_: float) -> None:
    return None


@dataclass
class StreamReport:
    """How far a shaped body got: events and bytes passed before its point (when it was
    reached: ``reached``), and how it ended (``end``: None when it was let through)."""

    events: int = 0
    bytes: int = 0
    reached: bool = False
    end: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "events": self.events,
            "bytes": self.bytes,
            "reached": self.reached,
            "end": self.end,
        }


#: Ends a shaped body for the client (``reset``, ``truncated``) once the relay has sent
#: ``sent`` body bytes; ``partial`` is the next data a truncated chunk announces. True for
#: ``truncated``: the relay sends half of ``partial`` before it breaks its answer off
#: (without the last chunk); otherwise it breaks off at once (mitmproxy then closes the
#: client connection, or resets an HTTP/2 stream).
EndClient = Callable[[End, int, bytes], Awaitable[bool]]


async def _cannot_end(end: End, sent: int, partial: bytes) -> bool:
    return False


@dataclass(eq=False)
class Route:
    """Where one throttled (or shaped) request really goes, and how its answer is paced
    (``pacing``) or shaped (``plan``)."""

    host: str
    port: int
    pacing: Pacing | None
    ssl_context: ssl.SSLContext | None = None
    sni: str | None = None
    rule: str = ""
    on_wait: Callable[[float], None] = field(default=_noop)
    """Called with the seconds of each pause, for the decision log's added latency."""
    plan: StreamPlan | None = None
    end_client: EndClient = field(default=_cannot_end)
    report: StreamReport = field(default_factory=StreamReport)
    unreachable: str | None = None
    """Why the real upstream could not be reached (the relay answered 502 itself)."""


class ClientGone(ConnectionError):
    """mitmproxy closed the relay connection (its client left)."""


class Relay:
    """Serves throttled and stream-shaped requests on a loopback port, started on first
    use."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._http = H11Server(self._exchange, "127.0.0.1", 0)
        #: a failing route (an unreachable upstream) fails every request sent its way:
        #: counted, logged at most once a minute; each reason is in the debug log and the
        #: 502's body
        self.refused = CountedWarning(
            logger,
            "relay: a throttled or stream-shaped request could not be relayed, its client "
            "got a 502",
        )

    @property
    def port(self) -> int | None:
        return self._http.port if self._http.serving else None

    async def start(self) -> int:
        """Listen on 127.0.0.1 (once); returns the port."""
        return await self._http.start()

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
        return self._http.active

    def close(self) -> None:
        """Stop listening and end every relayed exchange."""
        self._http.close()
        self._routes.clear()

    # ------------------------------------------------------------------ serving

    async def _exchange(self, exchange: Exchange, request: h11.Request) -> None:
        conn, reader, writer = exchange.conn, exchange.reader, exchange.writer
        headers = [(k, v) for k, v in request.headers.raw_items() if k.lower() != _HEADER]
        tokens = [v for k, v in request.headers.raw_items() if k.lower() == _HEADER]
        route = self._routes.pop(tokens[0].decode(), None) if tokens else None
        if route is None:
            await self._refuse(exchange, "unknown or expired relay token")
            return
        if route.plan is not None and route.plan.after is not None:
            encodings = [v for k, v in headers if k.lower() == b"accept-encoding"]
            if route.plan.unit is Unit.EVENTS and encodings:  # events are counted as sent
                headers = [(k, v) for k, v in headers if k.lower() != b"accept-encoding"]
                headers.append((b"accept-encoding", b"identity"))
        try:
            up_reader, up_writer = await asyncio.open_connection(
                route.host,
                route.port,
                ssl=route.ssl_context,
                server_hostname=(route.sni or route.host) if route.ssl_context else None,
            )
        except (OSError, ssl.SSLError) as exc:
            route.unreachable = f"cannot reach {route.host}:{route.port}: {exc}"
            await self._refuse(exchange, route.unreachable)
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
            event = await next_event(conn, reader)
            if isinstance(event, h11.Data):
                up_writer.write(up.send(event) or b"")
                await up_writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                up_writer.write(up.send(event) or b"")
                await up_writer.drain()
                break
            else:
                raise h11.RemoteProtocolError(f"unexpected {event!r} in a request body")
        # from here on mitmproxy sends nothing until the answer is done: watch for it
        # closing the connection (its client left), also while the upstream is silent
        pacer = _Pacer(route, reader, writer, conn)
        try:
            while True:  # the answer's head (interim 1xx answers passed on)
                event = await pacer.upstream(up, up_reader)
                if isinstance(event, h11.InformationalResponse):
                    writer.write(conn.send(event) or b"")
                    continue
                if not isinstance(event, h11.Response):
                    raise h11.RemoteProtocolError(
                        f"the upstream sent {event!r} instead of an answer"
                    )
                break
            head = event.headers.raw_items()
            plan = route.plan
            if plan is not None and plan.rewrites_framing:  # it may end early: chunked
                head = [(k, v) for k, v in head if k.lower() != b"content-length"]
            writer.write(
                conn.send(
                    h11.Response(status_code=event.status_code, headers=head, reason=event.reason)
                )
                or b""
            )
            await writer.drain()
            if plan is None:
                await pacer.run(up, up_reader)
            else:
                await pacer.shape(up, up_reader, plan, _content_type(head))
        finally:
            await pacer.stop_watching()

    async def _refuse(self, exchange: Exchange, why: str) -> None:
        logger.debug("relay: %s", why)
        self.refused.note()
        while not isinstance(await exchange.next_event(), h11.EndOfMessage):
            pass
        body = f"chaosproxy relay: {why}\n".encode()
        await exchange.respond(502, body, [("content-type", "text/plain")])


def _content_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.decode("latin-1")
    return None


class _Pacer:
    """Writes one answer's body on at the route's pace (or shaped by its plan), watching
    for the client leaving."""

    def __init__(
        self,
        route: Route,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: h11.Connection,
    ) -> None:
        self.route = route
        self.pacing = route.pacing
        self.sent = 0  # body bytes written on (shaped answers)
        self.writer = writer
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        # mitmproxy sends nothing more until this answer is done: a read that completes
        # now means it closed the connection.
        self.gone: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(READ_SIZE))

    async def run(self, up: h11.Connection, up_reader: asyncio.StreamReader) -> None:
        assert self.pacing is not None
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
            await self.stop_watching()

    async def shape(
        self,
        up: h11.Connection,
        up_reader: asyncio.StreamReader,
        plan: StreamPlan,
        content_type: str | None,
    ) -> None:
        """Write the body on as it comes, shaped by ``plan``: a late first byte, then at its
        point (``after`` events or bytes) a pause and an end, or the rest."""
        report = self.route.report
        counter = counter_for(plan, content_type)
        first = True
        try:
            while True:
                event = await self.upstream(up, up_reader)
                if isinstance(event, h11.EndOfMessage):
                    await self._end_message()
                    return
                if not isinstance(event, h11.Data):
                    raise h11.RemoteProtocolError(f"unexpected {event!r} in the upstream's body")
                data = event.data
                if first:
                    first = False
                    if plan.first_byte:
                        await self.pause(plan.first_byte)
                if counter is None or report.reached:
                    await self._send(data)
                    continue
                at = counter.split(data, event.chunk_end)
                report.events, report.bytes = counter.events, counter.bytes
                if at is None:
                    await self._send(data)
                    continue
                report.reached = True
                await self._send(data[:at])
                if plan.pause:
                    await self.pause(plan.pause)
                if plan.end is None:
                    await self._send(data[at:])
                    continue
                await self._end(plan.end, data[at:], up, up_reader)
                return
        finally:
            await self.stop_watching()

    async def _send(self, data: bytes) -> None:
        if data:
            self.writer.write(self.conn.send(h11.Data(data=data)) or b"")
            await self.writer.drain()
            self.sent += len(data)

    async def _end_message(self) -> None:
        self.writer.write(self.conn.send(h11.EndOfMessage()) or b"")
        await self.writer.drain()

    async def _end(
        self, end: End, rest: bytes, up: h11.Connection, up_reader: asyncio.StreamReader
    ) -> None:
        """End the body at its point: cleanly, or (reset, truncated) for the client by the
        route's ``end_client``; when that cannot, the answer is broken off here (no last
        chunk), which mitmproxy passes on by closing (HTTP/2: resetting the stream)."""
        self.route.report.end = end.value
        if end is End.CLEAN:
            await self._end_message()
            return
        partial = rest
        if end is End.TRUNCATED and not partial:  # the next data is what the chunk announces
            try:
                event = await asyncio.wait_for(self.upstream(up, up_reader), NEXT_DATA_WAIT)
            except TimeoutError:  # a silent upstream: closed without a half chunk
                event = None
            if isinstance(event, h11.Data):
                partial = event.data
        if await self.route.end_client(end, self.sent, partial) and end is End.TRUNCATED:
            await self._send(partial[: len(partial) // 2])  # the half of an announced chunk
        # the answer ends here without its last chunk (the connection closes)

    async def stop_watching(self) -> None:
        """Stop reading from mitmproxy's side (the connection has one reader only)."""
        if not self.gone.done():
            self.gone.cancel()
            # let the read unwind before the connection's next read
            await asyncio.wait([self.gone])

    async def upstream(self, up: h11.Connection, up_reader: asyncio.StreamReader) -> object:
        """The upstream's next event; ClientGone if mitmproxy closes the connection first."""
        read = asyncio.ensure_future(next_event(up, up_reader))
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
