"""The mitmproxy side of a fault: one flow seen through the :class:`~faults.Wire` protocol."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from mitmproxy import http

from chaosproxy.core.engine import Decision
from chaosproxy.core.fault import Pacing, Stage, has_body
from chaosproxy.core.grpc_protocol import is_grpc, parse_timeout
from chaosproxy.core.streams import End, StreamPlan
from chaosproxy.proxy_addons._internals import warmup
from chaosproxy.proxy_addons._internals.clientsock import reset_client
from chaosproxy.proxy_addons.relay import HEADER as RELAY_HEADER
from chaosproxy.proxy_addons.relay import Relay, Route
from chaosproxy.proxy_addons.streamend import ClientEnd
from chaosproxy.proxy_addons.upstream_connect import Handshakes, error_page, refused_tunnel

if TYPE_CHECKING:
    import random
    import ssl

logger = logging.getLogger("chaosproxy")

#: A gRPC call's wait ends this long after the deadline its client sent (``grpc-timeout``):
#: by then the client has given up (HTTP/2: it reset the stream, and no hook tells).
GRPC_DEADLINE_GRACE = 0.5


class FlowRequest:
    """A mitmproxy request as the engine's RequestView; everything computed on demand."""

    __slots__ = ("_flow", "_upstream", "point")

    def __init__(self, flow: http.HTTPFlow, upstream: str | None, point: str = "request") -> None:
        self._flow = flow
        self._upstream = upstream
        #: where it is decided (``chaosproxy.core.engine.POINTS``)
        self.point = point

    @property
    def method(self) -> str:
        return self._flow.request.method

    @property
    def host(self) -> str:
        return self._flow.request.host

    @property
    def upstream(self) -> str | None:
        return self._upstream

    @property
    def path(self) -> str:
        return unquote(self._flow.request.path.partition("?")[0])

    @property
    def url(self) -> str:
        return self._flow.request.pretty_url

    def header(self, name: str) -> list[str]:
        return self._flow.request.headers.get_all(name)

    def headers_by_name(self) -> dict[str, list[str]]:
        """Every header's values under its lower-case name (as ``header`` looks them up),
        in one pass: for callers that look up several names."""
        out: dict[str, list[str]] = {}
        for key, value in self._flow.request.headers.fields:
            name = key.lower().decode("utf-8", "surrogateescape")
            out.setdefault(name, []).append(value.decode("utf-8", "surrogateescape"))
        return out

    def query(self, name: str) -> list[str]:
        request = self._flow.request
        if "?" not in request.path:  # no query string: skip parsing the URL
            return []
        return request.query.get_all(name)

    def body(self) -> bytes:
        return self._flow.request.get_content(strict=False) or b""


class FlowResponse:
    """The answer of a flow as a fault's ResponseView."""

    __slots__ = ("_response",)

    def __init__(self, response: http.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @status.setter
    def status(self, value: int) -> None:
        self._response.status_code = value

    @property
    def headers(self) -> MutableMapping[str, str]:
        return self._response.headers

    @property
    def arrival(self) -> float:
        r = self._response
        return r.timestamp_end or r.timestamp_start or time.time()

    @property
    def content(self) -> bytes:
        return self._response.get_content(strict=False) or b""

    def set_content(self, body: bytes) -> None:
        self._response.content = body


class WireHost(Protocol):
    """What a :class:`FlowWire` reaches through besides its flow (the addon side provides it:
    ``flowhost.FlowHost``)."""

    @property
    def relay(self) -> Relay: ...

    def arrival(self, flow: http.HTTPFlow) -> float: ...

    async def wait_for_client(self, client_id: str, timeout: float | None) -> bool | None: ...

    def upstream_ssl_context(self) -> ssl.SSLContext: ...

    def connection_handler(self, client_id: str) -> Any: ...

    @property
    def handshakes(self) -> Handshakes: ...


class FlowWire:
    """One flow a rule fired for: the faults act on it through these methods."""

    def __init__(self, host: WireHost, flow: http.HTTPFlow, decision: Decision) -> None:
        self._host = host
        self._flow = flow
        self.decision = decision
        self.rule = decision.name
        self.arrival = host.arrival(flow)
        self.retry_after = decision.retry_after
        self.ended = False
        self._rng: random.Random | None = None
        #: for the decision log: what the client got when the faults ended the exchange
        #: ("reset", "closed", "client_disconnected"), the seconds held on purpose, and
        #: whether a fault answered before the upstream was called
        self.outcome: str | None = None
        self.added_latency = 0.0
        self.answered_early = False
        self.upstream_status: int | None = None
        #: set by a throttle: the answer's body is paced through the addon's relay
        self.pacing: Pacing | None = None
        #: set by a stream fault: the answer's body is shaped through the relay
        self.plan: StreamPlan | None = None
        self.route: Route | None = None
        self._client_end: ClientEnd | None = None
        self.relay_token: str | None = None
        self._origin: tuple[str, str, int, str | None] | None = None
        #: waits of this stage may open the upstream connection ahead (see warmup)
        self._ahead = False

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = self.decision.rng()
        return self._rng

    @property
    def response(self) -> FlowResponse | None:
        r = self._flow.response
        return FlowResponse(r) if r is not None else None

    def has(self, stage: Stage) -> bool:
        return any(f.stage is stage for f in self.decision.faults)

    async def run(self, stage: Stage) -> None:
        """Apply this decision's faults of ``stage``, in order, until the flow ends."""
        faults = self.decision.faults
        self._ahead = stage is Stage.REQUEST and all(
            f.passes_on for f in faults if f.stage is Stage.REQUEST
        )  # connect faults never let the upstream connection open early
        for fault in faults:
            if fault.stage is not stage:
                continue
            if self.ended or not self._flow.live:
                break
            await fault.apply(self)
        if stage is Stage.REQUEST and (self.pacing is not None or self.plan is not None):
            await self._route_through_relay(self.pacing)

    def pace(self, pacing: Pacing) -> None:
        self.pacing = pacing

    def shape(self, plan: StreamPlan) -> None:
        self.plan = plan

    async def _route_through_relay(self, pacing: Pacing | None) -> None:
        """Send the request to the relay, which fetches the answer and paces (or shapes)
        its body."""
        flow = self._flow
        if self.ended or flow.response is not None or not flow.live:
            return
        request = flow.request
        tls = request.scheme == "https"
        route = Route(
            host=request.host,
            port=request.port,
            pacing=pacing,
            ssl_context=self._host.upstream_ssl_context() if tls else None,
            sni=flow.server_conn.sni or request.host,
            rule=self.rule,
            on_wait=self._paced,
            plan=self.plan,
        )
        if self.plan is not None and self.plan.end in (End.RESET, End.TRUNCATED):
            self._client_end = ClientEnd(self, self._host.connection_handler, self.plan.end)
            route.end_client = self._client_end.end
        self.route = route
        port = await self._host.relay.start()
        self.relay_token = self._host.relay.add(route)
        self._origin = (request.scheme, request.host, request.port, request.host_header)
        request.scheme, request.host, request.port = "http", "127.0.0.1", port
        request.host_header = self._origin[3]  # setting host rewrote it
        request.headers[RELAY_HEADER] = self.relay_token

    def _paced(self, seconds: float) -> None:
        self.added_latency += seconds

    def streaming(self) -> bool:
        """In ``responseheaders``: for a paced answer, stream it (the relay paces the body)
        and show the real upstream in the flow again."""
        if self._origin is None or self._flow.response is None:
            return False
        self._flow.response.stream = self._client_end.passing if self._client_end else True
        request = self._flow.request
        request.scheme, request.host, request.port, host_header = self._origin
        request.host_header = host_header
        request.headers.pop(RELAY_HEADER, None)
        return True

    def stream_report(self) -> dict[str, object] | None:
        """For the decision log: how far a shaped body got and how it ended."""
        return self.route.report.to_dict() if self.route and self.plan else None

    @property
    def flow(self) -> http.HTTPFlow:
        return self._flow

    def forget_route(self) -> None:
        if self.relay_token is not None:
            self._host.relay.discard(self.relay_token)

    async def sleep_until(self, when: float) -> bool:
        delay = when - time.time()
        if delay <= 0:
            return not self.ended
        if self._ahead:
            self._open_ahead(when)
        ok = await self._wait(delay)
        if ok is False:
            self._client_left()
            return False
        return True

    def _open_ahead(self, when: float) -> None:
        """The request goes upstream once this wait ends: its connection may be opened
        during the wait (``chaosproxy run``; see
        :mod:`chaosproxy.proxy_addons._internals.warmup`)."""
        flow = self._flow
        request = flow.request
        server = flow.server_conn
        if flow.response is None and server.via is None and server.transport_protocol == "tcp":
            warmup.prepare(flow.client_conn.id, (request.host, request.port), when)

    async def hold(self) -> None:
        if await self._wait(None) is False:
            self._client_left()

    async def _wait(self, delay: float | None) -> bool | None:
        started = time.monotonic()
        client = self._flow.client_conn.id
        try:
            deadline = self._grpc_deadline()
            if deadline is not None:
                left = max(0.0, deadline - time.time())
                if delay is None or left < delay:
                    waited = await self._host.wait_for_client(client, left)
                    if waited is True:  # the call's deadline passed: its client gave up
                        self._abandon()
                        return False
                    return waited
            return await self._host.wait_for_client(client, delay)
        finally:
            self.added_latency += time.monotonic() - started

    def mark_ended(self, outcome: str) -> None:
        """A stream's end settled what the client got (``reset``, ``truncated``, ``closed``)."""
        self.ended = True
        self.outcome = self.outcome or outcome

    def _grpc_deadline(self) -> float | None:
        """When a gRPC call's client gives up (wall clock, with a grace), if it said."""
        headers = self._flow.request.headers
        if not is_grpc(headers.get("content-type")):
            return None
        timeout = parse_timeout(headers.get("grpc-timeout"))
        return None if timeout is None else self.arrival + timeout + GRPC_DEADLINE_GRACE

    def _abandon(self) -> None:
        """The client gave up on this call but kept its connection (an HTTP/2 stream reset
        runs no hook): end the flow here, so it neither waits on nor goes upstream."""
        if self._flow.killable:
            self._flow.kill()

    def _client_left(self) -> None:
        self.ended = True
        self.outcome = self.outcome or "client_disconnected"

    def respond(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        if self._flow.response is None:
            self.answered_early = True
        bodyless = not has_body(status)
        if bodyless or self._flow.request.method == "HEAD":  # a body would desync keep-alive
            body = b""
        response = http.Response.make(status, body, dict(headers))
        if bodyless:
            response.headers.pop("content-length", None)
        self._flow.response = response

    def close(self) -> None:
        self.ended = True
        self.outcome = self.outcome or "closed"
        if self._flow.killable:
            self._flow.kill()

    def cut(self, keep: float) -> None:
        flow = self._flow
        response = flow.response
        if response is None:
            return
        if flow.request.http_version.startswith("HTTP/2"):
            self.close()  # a Content-Length the stream does not fill: reset the stream
            return
        raw = response.raw_content or b""
        if not raw:
            logger.info("rule %s: nothing to truncate, the answer has no body", self.rule)
            return
        self.ended = True
        self.outcome = "truncated"
        sent = min(int(len(raw) * keep), len(raw) - 1)
        # Setting raw_content leaves the headers as they are: the client is promised the
        # whole body, gets part of it, then the connection closes (an incomplete read).
        response.headers.pop("transfer-encoding", None)
        response.headers["content-length"] = str(len(raw))
        response.headers["connection"] = "close"
        response.raw_content = raw[:sent]

    @property
    def upstream(self) -> tuple[str, int]:
        request = self._flow.request
        return request.host, request.port

    def fail_connect(self, error: str) -> None:
        flow = self._flow
        self.answered_early = True
        if flow.request.method == "CONNECT":
            flow.response = refused_tunnel(self.upstream, error)
        else:
            http2 = flow.request.http_version.startswith("HTTP/2")
            flow.response = error_page(502, error, http2)

    def fail_handshake(self, certificate: str | None) -> None:
        if self._flow.request.method != "CONNECT":
            return  # decided at requests only after the handshake: nothing to fail
        self.outcome = "tls_failed"
        self._host.handshakes.fail(self._flow.client_conn.id, certificate)

    def reset(self) -> None:
        self.ended = True
        self.outcome = self.outcome or "reset"
        flow = self._flow
        if not flow.request.http_version.startswith("HTTP/2"):
            handler = self._host.connection_handler(flow.client_conn.id)
            if handler is None or not reset_client(handler):
                logger.warning("rule %s: could not reset the connection; closing it", self.rule)
                self.outcome = "closed"
        if flow.killable:
            flow.kill()


def wait_future(
    loop: asyncio.AbstractEventLoop, timeout: float | None
) -> asyncio.Future[bool | None]:
    """A future that resolves True after ``timeout`` (never, if None) unless resolved first."""
    fut: asyncio.Future[bool | None] = loop.create_future()
    if timeout is not None:
        handle = loop.call_later(timeout, resolve_future, fut, True)
        fut.add_done_callback(lambda _: handle.cancel())
    return fut


def resolve_future(fut: asyncio.Future[bool | None], value: bool | None) -> None:
    """Resolve ``fut`` unless it already is (timer and disconnect race harmlessly)."""
    if not fut.done():
        fut.set_result(value)
