"""The mitmproxy side of the ``ws_*`` faults: the messages of WebSockets a rule fired for.

When a rule with ``ws_*`` faults fired for an upgrade request and the upstream answered 101,
the addon hands the flow over here (:meth:`WebSockets.adopt`); its decision is recorded
when the socket ends, with what happened to its messages. Each message of that socket in
a fault's direction goes through the rule's ``ws_*`` faults in order, as a
:class:`MessageAdapter`. Messages of other sockets cost one dict look-up.

A delayed message is dropped from mitmproxy's relay and injected again when it is due
(``inject.websocket``, public API); until then later messages of its direction queue behind
it, so each direction keeps its order and neither waits for the other. Injected messages
(ours, or anybody's) are not faulted again. Closing uses the ``websocket_close`` patch
(:mod:`._internals.wsclose`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mitmproxy import http

from chaosproxy.core.websocket import Direction, MessageFault
from chaosproxy.proxy_addons._internals import wsclose

if TYPE_CHECKING:
    from chaosproxy.proxy_addons.wire import FlowWire

logger = logging.getLogger("chaosproxy")

ACTIONS = ("seen", "dropped", "delayed", "corrupted")


class _Side:
    """One direction of a socket: its random stream, counts and held messages."""

    __slots__ = ("counts", "last_due", "pending", "rng", "task")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.counts = dict.fromkeys(ACTIONS, 0)
        #: (due monotonic time, content, is_text), oldest first
        self.pending: collections.deque[tuple[float, bytes, bool]] = collections.deque()
        self.last_due = 0.0
        self.task: asyncio.Task[None] | None = None


class Socket:
    """One WebSocket a ws_* rule fired for."""

    def __init__(self, flow: http.HTTPFlow, wire: FlowWire, proxyserver: Any) -> None:
        self.flow = flow
        self.wire = wire
        decision = wire.decision
        #: mitmproxy's proxyserver addon: injects held messages, wakes the layer to close
        self.proxyserver = proxyserver
        self.rule = decision.name
        self.faults = tuple(f for f in decision.faults if isinstance(f, MessageFault))
        self.sides = {
            True: _Side(decision.rng_for("ws:client")),
            False: _Side(decision.rng_for("ws:server")),
        }
        self.ended = False
        self.closed_by_proxy: int | None = None
        self.timers: list[asyncio.TimerHandle] = []
        self.close_warned = False

    def seen(self, direction: Direction) -> int:
        if direction == "both":
            return sum(side.counts["seen"] for side in self.sides.values())
        return self.sides[direction == "client"].counts["seen"]

    def summary(self) -> dict[str, Any]:
        ws = self.flow.websocket
        code = ws.close_code if ws is not None else None
        if self.closed_by_proxy is not None:
            closed_by: str | None = "proxy"
        elif ws is None or ws.timestamp_end is None:
            closed_by = None
        else:
            closed_by = "client" if ws.closed_by_client else "server"
        return {
            "client": dict(self.sides[True].counts),
            "server": dict(self.sides[False].counts),
            "close_code": code,
            "closed_by": closed_by,
        }


class MessageAdapter:
    """One message as the ws_* faults see it (a ``MessageWire``)."""

    __slots__ = ("_socket", "dropped", "from_client", "is_text", "message", "rule")

    def __init__(self, socket: Socket, message: Any) -> None:
        self._socket = socket
        self.message = message
        self.rule = socket.rule
        self.from_client: bool = message.from_client
        self.is_text: bool = message.is_text
        self.dropped = False

    @property
    def ended(self) -> bool:
        return self._socket.ended

    @property
    def content(self) -> bytes:
        return bytes(self.message.content)

    @property
    def rng(self) -> random.Random:
        return self._socket.sides[self.from_client].rng

    def seen(self, direction: Direction) -> int:
        return self._socket.seen(direction)

    def replace(self, content: bytes) -> None:
        self.message.content = content
        self._socket.sides[self.from_client].counts["corrupted"] += 1

    def drop(self) -> None:
        self.dropped = True
        self.message.drop()
        self._socket.sides[self.from_client].counts["dropped"] += 1

    def delay(self, seconds: float) -> None:
        self._socket.sides[self.from_client].counts["delayed"] += 1
        self.hold(seconds)

    def hold(self, seconds: float) -> None:
        """Take the message out of the relay and pass it on ``seconds`` from now (after any
        held before it in its direction)."""
        side = self._socket.sides[self.from_client]
        due = max(time.monotonic() + seconds, side.last_due)
        side.last_due = due
        side.pending.append((due, self.content, self.is_text))
        self.message.drop()
        if side.task is None:
            side.task = asyncio.get_running_loop().create_task(
                _pass_on(self._socket, self.from_client)
            )

    def close(self, code: int, reason: str) -> None:
        _close(self._socket, code, reason)


class TimerAdapter:
    """The socket as a ws_* fault's timer sees it (a ``SocketWire``)."""

    def __init__(self, socket: Socket) -> None:
        self._socket = socket
        self.rule = socket.rule

    @property
    def ended(self) -> bool:
        return self._socket.ended

    def close(self, code: int, reason: str) -> None:
        _close(self._socket, code, reason)


def _close(socket: Socket, code: int, reason: str) -> None:
    if socket.ended:
        return
    # ended first: mitmproxy may handle the close (and our hooks) before close() returns
    socket.ended, socket.closed_by_proxy = True, code
    if wsclose.close(socket.flow, code, reason, socket.proxyserver):
        for side in socket.sides.values():
            side.pending.clear()  # held messages die with the socket
        return
    socket.ended, socket.closed_by_proxy = False, None
    if not socket.close_warned:
        socket.close_warned = True
        logger.warning(
            "rule %s: could not close the WebSocket (closing already, or the websocket_close "
            "patch is off)",
            socket.rule,
        )


async def _pass_on(socket: Socket, from_client: bool) -> None:
    """Inject a direction's held messages as each falls due, in order."""
    side = socket.sides[from_client]
    try:
        while side.pending and not socket.ended:
            due, content, is_text = side.pending[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            side.pending.popleft()
            if not socket.flow.live or socket.proxyserver is None:
                break
            try:
                socket.proxyserver.inject_websocket(socket.flow, not from_client, content, is_text)
            except Exception:  # noqa: BLE001 - the socket went away meanwhile
                break
    finally:
        side.task = None


class WebSockets:
    """The sockets ws_* rules fired for, by flow id; fed by the addon's websocket hooks."""

    def __init__(self, master: Callable[[], Any], record: Callable[..., None]) -> None:
        self._master = master
        self._record = record
        self._sockets: dict[str, Socket] = {}

    def adopt(self, flow: http.HTTPFlow, wire: FlowWire) -> bool:
        """Take over an upgraded flow whose rule has ws_* faults (True: it is recorded, with
        what happened to its messages, when the socket ends)."""
        response = flow.response
        if flow.websocket is None or response is None or response.status_code != 101:
            return False
        if not any(isinstance(f, MessageFault) for f in wire.decision.faults):
            return False
        self._sockets[flow.id] = Socket(flow, wire, self._proxyserver())
        return True

    def _proxyserver(self) -> Any:
        master = self._master()
        return master.addons.get("proxyserver") if master is not None else None

    def started(self, flow: http.HTTPFlow) -> None:
        socket = self._sockets.get(flow.id)
        if socket is None:
            return
        loop = asyncio.get_running_loop()
        for fault in socket.faults:
            after = fault.timer()
            if after is not None:
                wire = TimerAdapter(socket)
                socket.timers.append(loop.call_later(after, fault.on_timer, wire))

    def message(self, flow: http.HTTPFlow) -> None:
        socket = self._sockets.get(flow.id)
        message = flow.websocket.messages[-1]  # type: ignore[union-attr]
        if socket is None:
            if message.injected and flow.websocket.timestamp_end is not None:  # type: ignore[union-attr]
                # our close's wake-up message, met after the close ran websocket_end (which
                # forgot the socket): sent, it would crash the layer (its peer is closing)
                message.drop()
            return
        if socket.ended:
            message.drop()  # after a close of ours: the message that woke the layer
            return
        if message.injected:
            return  # a held message passed on (or one somebody injected): as it is
        side = socket.sides[message.from_client]
        side.counts["seen"] += 1
        wire = MessageAdapter(socket, message)
        for fault in socket.faults:
            if socket.ended:
                break
            if wire.dropped and not fault.sees_dropped:
                continue
            if fault.applies_to(message.from_client):
                fault.on_message(wire)

    def ended(self, flow: http.HTTPFlow) -> None:
        socket = self._sockets.pop(flow.id, None)
        if socket is None:
            return
        socket.ended = True
        for timer in socket.timers:
            timer.cancel()
        for side in socket.sides.values():
            if side.task is not None:
                side.task.cancel()
        self._record(flow, socket.wire, websocket=socket.summary())

    def close(self) -> None:
        """The proxy stops: timers and held messages go."""
        for socket in list(self._sockets.values()):
            for timer in socket.timers:
                timer.cancel()
            for side in socket.sides.values():
                if side.task is not None:
                    side.task.cancel()
        self._sockets.clear()
