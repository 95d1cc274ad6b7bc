"""The upstream as the addon sees it: deadlines for its answers, and whether it is reachable.

:class:`UpstreamDeadlines` gives each flow sent upstream a connect timeout (until the TCP
connection is up) and a read timeout (from then, or from the end of the request on a
reused connection, until the answer's head). When one passes, the client gets a 504 with
the body the ``timeout`` fault answers with, and the upstream connection is closed (see
:mod:`._internals.upstreamtimeout`). :class:`UpstreamHealth` logs one warning when an
upstream cannot be reached or does not answer in time, and one line when it answers again.
:class:`Upstream` holds both and is what the addon calls from its hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import http

from chaosproxy.core.fault import JSON_HEADERS, error_body
from chaosproxy.core.oncelog import CountedWarning
from chaosproxy.core.timeouts import Timeouts
from chaosproxy.proxy_addons._internals import upstreamtimeout

logger = logging.getLogger("chaosproxy")

#: How often a flow's deadline looks whether its upstream connection is up yet (seconds).
CONNECT_POLL = 0.05
#: flow.metadata key: why the proxy gave up on the flow's upstream (``read timeout after 60s``)
TIMED_OUT_KEY = "chaosproxy_upstream_timeout"
#: Failing upstreams remembered at once (the least recently failed are forgotten first): in
#: forward mode a client chooses the hosts, so the table must not grow with its asking.
MAX_FAILING = 1000
#: Failing upstreams that get a warning line each; beyond them, one counted line a minute.
LOUD_FAILING = 5


def upstream_label(flow: http.HTTPFlow) -> str:
    address = flow.server_conn.address
    if address is None:
        return f"{flow.request.host}:{flow.request.port}"
    return f"{address[0]}:{address[1]}"


class UpstreamHealth:
    """One warning per upstream that became unreachable or slow; one line once it answers.

    At most ``loud`` upstreams failing at once get a line each; more (a client in forward
    mode asking for many dead hosts) are counted on one line logged at most once a minute,
    and only the ``limit`` most recent are remembered."""

    def __init__(self, limit: int = MAX_FAILING, loud: int = LOUD_FAILING) -> None:
        #: upstream (host:port) -> what went wrong, while it has not answered since
        self.failing: OrderedDict[str, str] = OrderedDict()
        #: upstreams that got their own warning, until they answer (at most ``loud``; kept
        #: when forgotten from ``failing``, so forgetting never makes room for more lines)
        self._warned: set[str] = set()
        self.limit, self.loud = limit, loud
        self.more = CountedWarning(
            logger,
            f"more upstreams are unreachable or late (over {loud} at once): "
            "clients get 502 or 504 from them",
        )

    def failed(self, upstream: str, why: str, consequence: str) -> None:
        if upstream in self.failing:
            self.failing.move_to_end(upstream)
            return
        self.failing[upstream] = why
        while len(self.failing) > self.limit:
            self.failing.popitem(last=False)
        if upstream in self._warned:
            return  # warned, forgotten from the table, failing again: still the same failure
        if len(self._warned) >= self.loud:
            self.more.note()
            return
        self._warned.add(upstream)
        logger.warning("upstream %s %s: %s", upstream, why, consequence)

    def answered(self, upstream: str) -> None:
        self.failing.pop(upstream, None)
        if upstream in self._warned:
            self._warned.discard(upstream)
            logger.info("upstream %s answers again", upstream)

    def flow_failed(self, flow: http.HTTPFlow) -> None:
        """A flow ended with an error: warn when it is the upstream's (it could not be
        reached); the client's leaving and the proxy's own kills are not."""
        error = flow.error
        if error is None or error.msg == error.KILLED_MESSAGE:
            return
        if flow.request.timestamp_end is None or flow.response is not None:
            return  # the client's doing, or the upstream had answered
        if flow.server_conn.timestamp_tcp_setup is not None:
            return  # it was reached
        if error.msg.lower().startswith("client disconnected"):
            return
        self.failed(
            upstream_label(flow),
            f"is unreachable ({error.msg})",
            "clients get 502 until it answers",
        )


class UpstreamDeadlines:
    """Connect and read timeouts of flows waiting on their upstream."""

    def __init__(self, health: UpstreamHealth, handler_of: Callable[[str], Any]) -> None:
        self.timeouts = Timeouts()
        self.health = health
        #: client connection id -> mitmproxy's handler of it (internal API), or None
        self.handler_of = handler_of
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: server connection id -> when it came up, on the loop's clock (while it is open)
        self._up_at: dict[str, float] = {}

    def arm(self, flow: http.HTTPFlow) -> None:
        """The request is done and goes upstream: start its clock."""
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        if self.timeouts.connect is None and self.timeouts.read is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # hooks called by hand (unit tests): no loop, no clock
            return
        self._check(flow, loop.time(), loop)

    def disarm(self, flow: http.HTTPFlow) -> None:
        """The answer's head arrived, or the flow ended."""
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def connected(self, server: Any) -> None:
        """An upstream connection came up: note when, on the clock the deadlines use."""
        if self.timeouts.read is None:
            return
        try:
            self._up_at[server.id] = asyncio.get_running_loop().time()
        except RuntimeError:  # hooks called by hand (unit tests): no loop, no clock
            pass

    def disconnected(self, server: Any) -> None:
        self._up_at.pop(server.id, None)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._up_at.clear()

    @property
    def pending(self) -> int:
        return len(self._timers)

    def _check(self, flow: http.HTTPFlow, sent: float, loop: asyncio.AbstractEventLoop) -> None:
        self._timers.pop(flow.id, None)
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        now = loop.time()
        connected = flow.server_conn.timestamp_tcp_setup
        connect, read = self.timeouts.connect, self.timeouts.read
        if connected is None:
            if connect is not None and now - sent >= connect:
                self._give_up(flow, f"did not accept a connection within {connect:g}s")
                return
            # look again soon: the read timeout counts from the moment it connects
            due = min(sent + connect if connect is not None else now + 1.0, now + CONNECT_POLL)
        else:
            if read is None:
                return
            # the read timeout counts from when it connected, or from the request's end on
            # a connection that was up before it (all on the loop's clock: mitmproxy's
            # timestamp_tcp_setup is wall-clock time, which can jump)
            start = max(sent, self._up_at.get(flow.server_conn.id, sent))
            if now - start >= read:
                self._give_up(flow, f"did not answer within {read:g}s")
                return
            due = start + read
        self._timers[flow.id] = loop.call_at(due, self._check, flow, sent, loop)

    def _give_up(self, flow: http.HTTPFlow, why: str) -> None:
        handler = self.handler_of(flow.client_conn.id)
        body = error_body(504, "", {"rule": None, "upstream": f"{upstream_label(flow)} {why}"})
        answer = http.Response.make(504, body, dict(JSON_HEADERS))
        if handler is None or not upstreamtimeout.give_up(handler, flow, answer):
            logger.debug("cannot give up on the upstream of %s", flow.request.pretty_url)
            return
        flow.metadata[TIMED_OUT_KEY] = why
        self.health.failed(upstream_label(flow), why, "clients get 504 until it answers")


class Upstream:
    """What the addon's hooks tell about the upstream: deadlines for its answers (armed when
    the request goes, disarmed at the answer's head) and its health (failed, answered)."""

    def __init__(self, handler_of: Callable[[str], Any]) -> None:
        self.health = UpstreamHealth()
        self.deadlines = UpstreamDeadlines(self.health, handler_of)

    def sent(self, flow: http.HTTPFlow, work: Awaitable[Any] | None) -> Any:
        """The request hook's result: ``work`` (request-stage faults) runs first, then
        what goes upstream has its deadlines. Returns what the hook returns."""
        if work is None:
            self.deadlines.arm(flow)
            return None
        return self._then_arm(flow, work)

    async def _then_arm(self, flow: http.HTTPFlow, work: Awaitable[Any]) -> None:
        await work
        self.deadlines.arm(flow)

    def answering(self, flow: http.HTTPFlow) -> None:
        """The answer's head arrived (its body may still come)."""
        self.deadlines.disarm(flow)

    def answered(self, flow: http.HTTPFlow) -> bool:
        """The response hook: True when the answer is the proxy's own 504 (it gave up)."""
        self.deadlines.disarm(flow)
        timed_out = TIMED_OUT_KEY in flow.metadata
        if flow.response is not None and not timed_out and flow.server_conn.timestamp_tcp_setup:
            self.health.answered(upstream_label(flow))
        return timed_out

    def failed(self, flow: http.HTTPFlow) -> None:
        """The error hook."""
        self.deadlines.disarm(flow)
        self.health.flow_failed(flow)

    def close(self) -> None:
        self.deadlines.close()
