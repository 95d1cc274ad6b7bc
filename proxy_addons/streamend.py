"""The client's side of a cut stream: a TCP reset or a truncated chunk, exactly after the
bytes the relay let through.

The relay shapes the body (``relay.py``); mitmproxy streams it on to the client. To end
the stream with something mitmproxy's flow API cannot produce (an RST on an HTTP/1.1
connection, a chunk cut short), :class:`ClientEnd` counts the body bytes mitmproxy passes
on (as the flow's stream callable), waits until all the relay sent has left for the
client, then acts on the client's socket (internal API: ``_internals/clientsock.py``).
On HTTP/2, or when the socket is not reachable, it declines and the relay breaks its
answer off: mitmproxy then resets the HTTP/2 stream, or closes the HTTP/1.1 connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from mitmproxy import http

from chaosproxy.core.streams import End
from chaosproxy.proxy_addons._internals import clientsock

logger = logging.getLogger("chaosproxy")

#: The longest wait for mitmproxy to pass on what the relay sent, and for it to leave.
PASS_TIMEOUT = 5.0
FLUSH_TIMEOUT = 2.0


class EndingWire(Protocol):
    """The flow's wire, as :class:`ClientEnd` needs it (``wire.FlowWire``)."""

    rule: str

    @property
    def flow(self) -> http.HTTPFlow: ...

    def mark_ended(self, outcome: str) -> None: ...


class ClientEnd:
    """Ends one shaped flow's answer for its client, after the bytes the relay sent."""

    def __init__(self, wire: EndingWire, handlers: Callable[[str], Any]) -> None:
        self._wire = wire
        self._handlers = handlers
        self.passed = 0
        self._moved = asyncio.Event()

    def passing(self, data: bytes) -> list[bytes]:
        """The flow's stream callable: counts the body bytes on their way to the client."""
        self.passed += len(data)
        self._moved.set()
        return [data] if data else []

    async def end(self, end: End, sent: int, partial: bytes) -> bool:
        """The relay reached the point after ``sent`` body bytes: end the stream for the
        client as ``end`` says; ``partial`` is the data a truncated chunk announces.
        False: not done here (HTTP/2, or no socket), the relay breaks its answer off."""
        wire = self._wire
        flow = wire.flow
        if flow.request.http_version.startswith(("HTTP/2", "HTTP/3")):
            wire.mark_ended("reset")  # mitmproxy resets the stream when the relay breaks off
            return False
        handler = self._handlers(flow.client_conn.id)
        if handler is None or not await self._passed_on(sent):
            wire.mark_ended("closed")  # mitmproxy closes when the relay breaks off
            return False
        if not await clientsock.flushed(handler, FLUSH_TIMEOUT):
            logger.info("rule %s: the client is not reading; ending its stream anyway", wire.rule)
        if end is End.RESET:
            done = clientsock.reset_client(handler)
            wire.mark_ended("reset" if done else "closed")
            return done
        announced = len(partial) or 1  # a chunk size of 0 would end the body properly
        chunk = b"%x\r\n" % announced + partial[: len(partial) // 2]
        done = clientsock.write_and_close(handler, chunk)
        wire.mark_ended("truncated" if done else "closed")
        return done

    async def _passed_on(self, sent: int) -> bool:
        """Wait until mitmproxy passed ``sent`` body bytes on to the client."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PASS_TIMEOUT
        while self.passed < sent:
            self._moved.clear()
            left = deadline - loop.time()
            if left <= 0:
                logger.warning(
                    "rule %s: mitmproxy passed on %d of %d bytes; closing the stream instead",
                    self._wire.rule,
                    self.passed,
                    sent,
                )
                return False
            try:
                await asyncio.wait_for(self._moved.wait(), left)
            except TimeoutError:
                pass
        return True
