"""A small HTTP/1.1 server over asyncio streams and h11 (which mitmproxy already depends on).

Used by the control API (one JSON answer per request) and by the throttle relay (which
streams its answers): both hand :class:`H11Server` an *exchange* coroutine that gets each
request's head and answers it on the connection; the server owns the listening socket,
the keep-alive loop, protocol errors and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11

logger = logging.getLogger("chaosproxy")

READ_SIZE = 65536


@dataclass
class Exchange:
    """One connection as an exchange sees it: h11's state, and the stream to the client."""

    conn: h11.Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_timeout: float | None = None
    #: The loop time by which the current request must have arrived whole (head and
    #: body), or None: the server's ``request_timeout`` from when it began waiting for the
    #: head. The handler reading the body keeps to it.
    deadline: float | None = None

    async def next_event(self) -> object:
        """h11's next event, reading from the client as needed (TimeoutError after
        ``idle_timeout`` seconds without data)."""
        return await next_event(self.conn, self.reader, self.idle_timeout)

    def send(self, *events: object) -> None:
        """Write ``events`` (h11 events) to the client."""
        self.writer.write(b"".join(self.conn.send(e) or b"" for e in events))  # type: ignore[arg-type]

    async def respond(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
        *,
        reason: bytes = b"",
    ) -> None:
        """Send a whole answer (Content-Length from ``body``), then wait for it to drain."""
        head = h11.Response(
            status_code=status,
            headers=[*headers, ("content-length", str(len(body)))],
            reason=reason,
        )
        try:
            self.send(head, h11.Data(data=body), h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        await self.writer.drain()


async def next_event(
    conn: h11.Connection, reader: asyncio.StreamReader, timeout: float | None = None
) -> object:
    """h11's next event on ``conn``, reading from ``reader`` as needed."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        read = reader.read(READ_SIZE)
        conn.receive_data(await (asyncio.wait_for(read, timeout) if timeout else read))


Handler = Callable[[Exchange, h11.Request], Awaitable[None]]
#: What to answer a request h11 cannot parse: (status, reason) -> (content type, body);
#: None closes the connection without an answer.
BadRequest = Callable[[int, str], tuple[str, bytes]]


class H11Server:
    """Serves ``handler`` for each request on ``host:port`` (port 0: any free one).

    After each exchange the connection is kept for the next request when both sides
    finished theirs (keep-alive), and closed otherwise.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float | None = None,
        max_head: int = 16 * 1024,  # h11's default
        bad_request: BadRequest | None = None,
        header_timeout: float | None = None,
        max_connections: int | None = None,
        request_timeout: float | None = None,
    ) -> None:
        """``idle_timeout``: the longest wait for any read; ``header_timeout``: the longest
        wait for a whole request head (from the connection's start, or the end of the
        previous answer), so idle and slow clients are closed; ``request_timeout``: the
        same for the whole request, head and body (set as the exchange's ``deadline``: the
        handler that reads the body keeps to it); ``max_connections``: beyond that many at
        once, a new connection gets 503 and is closed."""
        self.handler = handler
        self.host = host
        self.port = port
        self._bind_port = port
        self.idle_timeout = idle_timeout
        self.max_head = max_head
        self.bad_request = bad_request
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.turned_away = 0
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def active(self) -> int:
        """Connections being served now."""
        return len(self._tasks)

    async def start(self) -> int:
        """Bind and serve, once (raises OSError when the address is taken); returns the port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self._bind_port)
            sockets = self._server.sockets or ()
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        return self.port

    def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task, writer in list(self._tasks.items()):
            writer.close()  # now: the loop may stop before the task sees its cancellation
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.max_connections is not None and len(self._tasks) >= self.max_connections:
            await self._turn_away(reader, writer)
            return
        self._tasks[task] = writer
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)
        exchange = Exchange(conn, reader, writer, self.idle_timeout)
        try:
            while True:
                if self.request_timeout is not None:
                    exchange.deadline = asyncio.get_running_loop().time() + self.request_timeout
                try:
                    event = await self._next_head(exchange)
                except h11.RemoteProtocolError as exc:
                    await self._refuse(exchange, exc)
                    break
                if not isinstance(event, h11.Request):
                    break
                await self.handler(exchange, event)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (OSError, TimeoutError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            logger.debug("%s: connection ended early: %r", self.url, exc)
        except asyncio.CancelledError:
            # the server is closing; ending quietly keeps asyncio (3.11) from logging the
            # cancelled connection task as an error
            pass
        finally:
            self._tasks.pop(task, None)
            writer.close()

    async def _next_head(self, exchange: Exchange) -> object:
        if self.header_timeout is None:
            return await exchange.next_event()
        async with asyncio.timeout(self.header_timeout):  # TimeoutError: the connection ends
            return await exchange.next_event()

    async def _turn_away(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer 503 at once and close: too many connections are open."""
        self.turned_away += 1
        if self.turned_away == 1 or self.turned_away % 1000 == 0:
            logger.warning(
                "%s: %d connections open (the most it serves at once): new ones get 503 "
                "(%d so far)",
                self.url,
                self.max_connections,
                self.turned_away,
            )
        message = f"too many connections (at most {self.max_connections}); try again later"
        content_type, body = (
            self.bad_request(503, message)
            if self.bad_request is not None
            else ("text/plain", message.encode())
        )
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "retry-after: 1\r\nconnection: close\r\n\r\n"
        )
        try:
            async with asyncio.timeout(1.0):
                writer.write(head.encode("latin-1") + body)
                await writer.drain()
                writer.write_eof()
                # read what the client sends until it closes (at most a second): closing
                # with its request unread would reset the connection before it reads the 503
                while await reader.read(READ_SIZE):
                    pass
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _refuse(self, exchange: Exchange, exc: h11.RemoteProtocolError) -> None:
        if self.bad_request is None or exchange.conn.our_state is not h11.IDLE:
            return
        content_type, body = self.bad_request(exc.error_status_hint, f"bad request: {exc}")
        headers = [("content-type", content_type), ("connection", "close")]
        await exchange.respond(exc.error_status_hint, body, headers)
