"""The control API's server: steer and observe a running proxy over HTTP, in its event loop.

An :class:`~chaosproxy.control.http.H11Server` on the admin address, started by the
addon's ``running`` hook on mitmproxy's loop, so every call sees the same engine the
flows see, with no second thread to drift out of sync. This module reads each request
(within the size limit), applies the access policy and hands it to the routes
(:mod:`.routes`).

Safety: bound to loopback unless given a token; with a token every call must carry
``Authorization: Bearer T``, but for a bare ``GET /healthz`` (the status word only, for
probes that cannot hold a secret). Without a token a ``Host`` that is not a loopback name is
refused (a web page cannot reach the API through DNS rebinding), and so is any browser
request from another origin (``Origin`` header), token or not.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from urllib.parse import parse_qsl, urlsplit

import h11

from chaosproxy.control import offload
from chaosproxy.control.http import Exchange, H11Server
from chaosproxy.control.routes import Reply, Request, Routes
from chaosproxy.control.target import ControlTarget
from chaosproxy.core.yamlsource import MAX_BYTES

DEFAULT_ADMIN = ("127.0.0.1", 8475)
MAX_BODY = MAX_BYTES  # the same limit as scenario files
#: Bodies of the other calls (a phase jump, an explained request) are small: at most this.
MAX_SMALL_BODY = 64_000
TOKEN_ENV = "CHAOSPROXY_ADMIN_TOKEN"
IDLE_TIMEOUT = 60.0
#: Seconds a client has to send a whole request head (from connecting, or from the end of
#: the previous answer): idle keep-alive and slow clients are closed after it.
HEADER_TIMEOUT = 10.0
#: Seconds a client has to send a whole request, head and body (from the same start as
#: HEADER_TIMEOUT): a client trickling a large body gets 408 and is closed, so it cannot
#: hold one of the MAX_CONNECTIONS slots for long.
REQUEST_TIMEOUT = 30.0
#: Admin connections served at once; beyond, a new one gets 503 and is closed. The proxy's
#: own connections do not count, so a flood of idle admin connections leaves it serving.
MAX_CONNECTIONS = 64


class AdminConfigError(ValueError):
    """The admin address and token do not go together (or do not parse)."""


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_admin(text: str) -> tuple[str, int] | None:
    """``HOST:PORT``, ``PORT`` or ``off`` (None: no control API)."""
    if text.strip().lower() in ("off", "none", "no", ""):
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_ADMIN[0], text
    host = host.strip("[]") or DEFAULT_ADMIN[0]
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise AdminConfigError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8475) or off")
    return host, int(port)


def check_admin(host: str, token: str | None) -> None:
    """Refuse to serve the control API beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise AdminConfigError(
            f"the control API on {host} would be reachable from other machines: give "
            f"--admin-token (or {TOKEN_ENV}), or bind it to 127.0.0.1"
        )


# --------------------------------------------------------------------------- server


def _json_error(status: int, message: str) -> tuple[str, bytes]:
    return "application/json", Reply.error(status, message).body


class ControlServer:
    """The admin HTTP server of one proxy (a :class:`ControlTarget`)."""

    def __init__(
        self, target: ControlTarget, host: str, port: int, token: str | None = None
    ) -> None:
        check_admin(host, token)
        self.token = token or None
        self.routes = Routes(target)
        self.http = H11Server(
            self._exchange,
            host,
            port,
            idle_timeout=IDLE_TIMEOUT,
            max_head=64 * 1024,
            bad_request=_json_error,
            header_timeout=HEADER_TIMEOUT,
            max_connections=MAX_CONNECTIONS,
            request_timeout=REQUEST_TIMEOUT,
        )
        self._offload = False  # holds the scenario loading process (offload.acquire)

    @property
    def host(self) -> str:
        return self.http.host

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        return self.http.url

    async def start(self) -> None:
        """Bind and serve (raises OSError when the address is taken)."""
        if self.http.serving:
            return
        await self.http.start()
        offload.acquire()
        self._offload = True

    def close(self) -> None:
        self.http.close()
        if self._offload:  # the last user ends the loading process (even mid-load)
            self._offload = False
            offload.release()

    async def _exchange(self, exchange: Exchange, event: h11.Request) -> None:
        target = urlsplit(event.target.decode("latin-1"))
        request = Request(
            method=event.method.decode("ascii").upper(),
            path=target.path.rstrip("/") or "/",
            query=dict(parse_qsl(target.query)),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
        )
        reply = self._refuse(request) or await self._read_body(exchange, request)
        keep = reply is None
        if reply is None:
            reply = await self.routes.dispatch(request)
        headers = [
            ("content-type", reply.content_type),
            ("cache-control", "no-store"),
            *reply.headers.items(),
        ]
        if not keep:
            headers.append(("connection", "close"))
        await exchange.respond(reply.status, reply.body, headers)

    async def _read_body(self, exchange: Exchange, request: Request) -> Reply | None:
        """Read the body into ``request``; a Reply refuses it (ConnectionError: the client
        left)."""
        limit = (
            MAX_BODY if (request.method, request.path) == ("PUT", "/scenario") else MAX_SMALL_BODY
        )
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limit:
            return Reply.error(413, f"the body is over {limit} bytes")
        if exchange.conn.they_are_waiting_for_100_continue:
            # a client that sent Expect (curl does for large bodies) waits for this before
            # the body, or a second without it
            exchange.send(h11.InformationalResponse(status_code=100, headers=[]))
        chunks: list[bytes] = []
        total = 0
        try:
            async with asyncio.timeout_at(exchange.deadline):
                while True:
                    event = await exchange.next_event()
                    if isinstance(event, h11.Data):
                        total += len(event.data)
                        if total > limit:
                            return Reply.error(413, f"the body is over {limit} bytes")
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        raise ConnectionError("the client left during the body")
        except h11.RemoteProtocolError as exc:
            return Reply.error(exc.error_status_hint, f"bad request: {exc}")
        except TimeoutError:
            return Reply.error(
                408, f"the request did not arrive whole within {REQUEST_TIMEOUT:g} s"
            )
        request.body = b"".join(chunks)
        return None

    # ------------------------------------------------------------------ policy

    def _bare_health(self) -> Reply:
        """``GET /healthz`` without the token (or from a non-loopback Host): the status and
        nothing else, so a probe (a Kubernetes kubelet, a load balancer) needs no secret."""
        full = self.routes.healthz(Request(method="GET", path="/healthz", query={}, headers={}))
        status = json.loads(full.body).get("status", "ok")
        return Reply.json(full.status, {"status": status})

    def _refuse(self, request: Request) -> Reply | None:
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != self.url:
            return Reply.error(
                403,
                "requests from web pages (Origin header) are refused: call the control API "
                "from a program or a server, not from a page's JavaScript",
            )
        if self.token is not None:
            auth = request.headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                if (request.method, request.path) == ("GET", "/healthz"):
                    return self._bare_health()
                return Reply.json(
                    401,
                    {"error": "missing or wrong token: send Authorization: Bearer T"},
                    **{"www-authenticate": 'Bearer realm="chaosproxy"'},
                )
            return None
        host = request.headers.get("host", "")
        hostname = urlsplit(f"//{host}").hostname or ""
        if not is_loopback(hostname):
            if (request.method, request.path) == ("GET", "/healthz"):
                return self._bare_health()
            return Reply.error(
                403,
                f"Host {host!r} is not a loopback name; without --admin-token the control "
                "API answers only to 127.0.0.1, ::1 or localhost",
            )
        return None
