"""The client's side of a cut stream: a TCP reset or a truncated chunk, exactly after the
bytes the relay let through.

The relay shapes the body (``relay.py``); mitmproxy streams it on to the client. To end
the stream with what mitmproxy's flow API cannot produce, :class:`ClientEnd` is the
flow's stream callable, so it sees (and counts) the body bytes on their way out:

- ``reset``: once all the relay sent has passed and left for the client, the client's
  socket is reset (internal API: ``_internals/clientsock.py``), TLS or not.
- ``truncated``: over HTTP/1.1 the callable frames the chunks itself (the same bytes
  mitmproxy would write; mitmproxy frames each piece by the answer's Transfer-Encoding,
  so that header is taken off the flow's answer once its head has gone, and put back
  after), which lets it announce the next chunk's full size and pass on only the half
  the relay sends; then the relay breaks off and mitmproxy closes the connection. All
  bytes go through mitmproxy's layers, so this holds over TLS too. That reliance on
  mitmproxy's internals is declared in ``_internals/chunkframing.py``: when its shape is
  not there, ``truncated`` ends the stream as ``reset`` does.

On HTTP/2 it declines and the relay breaks its answer off: mitmproxy resets that stream.
When the socket is not reachable, a reset becomes that break-off (mitmproxy closes the
HTTP/1.1 connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from mitmproxy import http

from chaosproxy.core.streams import End
from chaosproxy.proxy_addons._internals import chunkframing, clientsock

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

    def __init__(self, wire: EndingWire, handlers: Callable[[str], Any], end: End) -> None:
        self._wire = wire
        self._handlers = handlers
        self.passed = 0
        self._moved = asyncio.Event()
        truncating = end is End.TRUNCATED and chunkframing.usable()
        #: truncated, mitmproxy's framing not as relied on: reset instead (warned once)
        self._reset_instead = end is End.TRUNCATED and not truncating
        #: truncated over HTTP/1.1: this callable frames the chunks (None: not decided yet)
        self._framing: bool | None = None if truncating else False
        self._te: str | None = None
        #: truncated: the size the next chunk announces, once the point is reached
        self._announce: int | None = None
        self._halving = False

    def passing(self, data: bytes) -> list[bytes]:
        """The flow's stream callable: counts (and, truncating over HTTP/1.1, frames) the
        body bytes on their way to the client; ``b""`` is the end of the body."""
        self.passed += len(data)
        self._moved.set()
        if self._framing is None:
            self._framing = self._take_framing()
        if not self._framing:
            return [data] if data else []
        if not data:  # the body's proper end (the point was never reached)
            self._give_framing_back()
            return [b"0\r\n\r\n"]
        if self._halving:  # more of the half chunk
            return [data]
        if self._announce is not None:  # the half chunk: announced whole, never finished
            self._halving = True
            self._give_framing_back()
            return [b"%x\r\n%s" % (self._announce, data)]
        return [b"%x\r\n%s\r\n" % (len(data), data)]

    def _take_framing(self) -> bool:
        """The answer's head has gone: take its chunked framing over (HTTP/1.1 only)."""
        flow = self._wire.flow
        response = flow.response
        if response is None or flow.request.http_version.startswith(("HTTP/2", "HTTP/3")):
            return False
        te = response.headers.get("transfer-encoding", "")
        if "chunked" not in te.lower():
            return False
        self._te = te
        del response.headers["transfer-encoding"]
        return True

    def _give_framing_back(self) -> None:
        """Put the Transfer-Encoding back for the flow's record, once mitmproxy has written
        what the callable returned (it reads the header for each piece it writes)."""
        te, self._te = self._te, None
        response = self._wire.flow.response
        if te is not None and response is not None:
            put_back = response.headers.__setitem__
            asyncio.get_running_loop().call_soon(put_back, "transfer-encoding", te)

    async def end(self, end: End, sent: int, partial: bytes) -> bool:
        """The relay reached the point after ``sent`` body bytes: end the stream for the
        client as ``end`` says; ``partial`` is the data a truncated chunk announces.
        True (truncated): the relay sends the first half of ``partial``, then breaks off.
        False: not done here, the relay breaks off at once (HTTP/2: mitmproxy resets
        the stream; HTTP/1.1: it closes the connection)."""
        wire = self._wire
        flow = wire.flow
        if flow.request.http_version.startswith(("HTTP/2", "HTTP/3")):
            wire.mark_ended("reset")
            return False
        if not await self._passed_on(sent):
            wire.mark_ended("closed")
            return False
        if end is End.TRUNCATED and not self._reset_instead:
            if not self._framing or len(partial) < 2:  # no half to send: closed after the point
                wire.mark_ended("truncated" if self._framing else "closed")
                self._give_framing_back()
                return False
            self._announce = len(partial)
            wire.mark_ended("truncated")
            return True
        handler = self._handlers(flow.client_conn.id)
        if handler is None:
            wire.mark_ended("closed")
            return False
        if not await clientsock.flushed(handler, FLUSH_TIMEOUT):
            logger.info("rule %s: the client is not reading; resetting it anyway", wire.rule)
        done = clientsock.reset_client(handler)
        wire.mark_ended("reset" if done else "closed")
        return done and not self._reset_instead  # (True would send a truncated half chunk)

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
