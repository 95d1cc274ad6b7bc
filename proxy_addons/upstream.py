"""The upstream as the addon sees it: deadlines for its answers, and whether it is reachable.

:class:`UpstreamDeadlines` gives each flow sent upstream a connect timeout (until the TCP
connection is up) and a read timeout (from then, or from the end of the request on a
reused connection, until the answer's head). When one passes, the client gets a 504 with
the body the ``timeout`` fault answers with, and the upstream connection is closed (see
:mod:`._internals.upstreamtimeout`). :class:`UpstreamHealth` logs one warning when an
upstream cannot be reached or does not answer in time, and one line when it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from chaosproxy.core.fault import JSON_HEADERS, error_body
from chaosproxy.core.timeouts import Timeouts
from chaosproxy.proxy_addons._internals import upstreamtimeout

logger = logging.getLogger("chaosproxy")

#: How often a flow's deadline looks whether its upstream connection is up yet (seconds).
CONNECT_POLL = 0.05
#: flow.metadata key: why the proxy gave up on the flow's upstream (``read timeout after 60s``)
TIMED_OUT_KEY = "chaosproxy_upstream_timeout"


def upstream_label(flow: http.HTTPFlow) -> str:
    address = flow.server_conn.address
    if address is None:
        return f"{flow.request.host}:{flow.request.port}"
    return f"{address[0]}:{address[1]}"


class UpstreamHealth:
    """One warning per upstream that became unreachable or slow; one line once it answers."""

    def __init__(self) -> None:
        #: upstream (host:port) -> what went wrong, while it has not answered since
        self.failing: dict[str, str] = {}

    def failed(self, upstream: str, why: str, consequence: str) -> None:
        if upstream in self.failing:
            return
        self.failing[upstream] = why
        logger.warning("upstream %s %s: %s", upstream, why, consequence)

    def answered(self, upstream: str) -> None:
        if self.failing.pop(upstream, None) is not None:
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

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

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
            start = max(sent, now - (time.time() - connected))
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
