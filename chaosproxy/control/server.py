"""The control API: steer and observe a running proxy over HTTP, inside its own event loop.

A small HTTP/1.1 server (h11, which mitmproxy already depends on) on the admin address,
started by the addon's ``running`` hook on mitmproxy's loop, so every call sees the same
engine the flows see, with no second thread to drift out of sync. The endpoints and JSON
shapes are DESIGN.md's (see the README's "Controlling a running proxy").

Safety: bound to loopback unless given a token; with a token every call must carry
``Authorization: Bearer T``. Without a token a ``Host`` that is not a loopback name is
refused (a web page cannot reach the API through DNS rebinding), and so is any browser
request from another origin (``Origin`` header), token or not.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
from pydantic import BaseModel

from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core import yamlsource
from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from chaosproxy.core.scenario import Scenario, ScenarioError

if TYPE_CHECKING:
    from chaosproxy.proxy_addons.chaos import ChaosAddon

logger = logging.getLogger("chaosproxy")

DEFAULT_ADMIN = ("127.0.0.1", 8475)
MAX_BODY = 1_000_000
TOKEN_ENV = "CHAOSPROXY_ADMIN_TOKEN"
BODY_SOURCE = "body"
"""How located errors name a PUT body: ``body:3:12: rules[0].fault.status: ...``."""
#: Keys GET /scenario adds to the scenario document; PUT ignores them, so a GET's output
#: can be edited and PUT back.
RUNTIME_KEYS = ("phase", "source", "paused", "expires_in")
IDLE_TIMEOUT = 60.0


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


# --------------------------------------------------------------------------- documents


def model_document(model: BaseModel) -> dict[str, Any]:
    """A model as the JSON a scenario file would hold: defaults left out (fault ``type``s
    kept), so it loads back to an equal model."""
    doc: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        value = getattr(model, name)
        if name == "type":
            doc[key] = value
        elif key not in doc:
            continue
        elif isinstance(value, BaseModel):
            doc[key] = model_document(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            doc[key] = [model_document(v) for v in value]
    return doc


def scenario_state(addon: ChaosAddon) -> dict[str, Any]:
    """``GET /scenario``: the active scenario's document with ``phase``, ``seed`` (the one
    in use), ``source``, ``paused`` and ``expires_in`` (seconds until its ttl, or null)."""
    engine = addon.engine
    doc = model_document(engine.scenario)
    doc["name"] = engine.scenario.label
    doc["seed"] = engine.seed
    doc["phase"] = engine.phase
    doc["source"] = engine.source
    doc["paused"] = engine.paused
    doc["expires_in"] = engine.expires_in()
    return doc


def metrics_state(addon: ChaosAddon) -> dict[str, Any]:
    engine = addon.engine
    return {
        "scenario": engine.scenario.label,
        "source": engine.source,
        "seed": engine.seed,
        "phase": engine.phase,
        "phases": engine.phase_names,
        "paused": engine.paused,
        "held": addon.held,
    }


def shipped_list(active: str) -> list[dict[str, Any]]:
    """``GET /scenarios``: the shipped scenarios, for pickers."""
    out = []
    for entry in scenario_mod.shipped():
        try:
            sc = entry.load()
        except ScenarioError as exc:  # a broken shipped file must not hide the others
            logger.warning("shipped scenario %s is invalid: %s", entry.name, exc.lines[0])
            continue
        out.append(
            {
                "name": entry.name,
                "description": " ".join(sc.description.split()),
                "phases": [p.name for p in sc.phases],
                "rules": sum(1 for _ in sc.all_rules()),
                "active": sc.label == active,
            }
        )
    return out


def load_body(text: str) -> tuple[Scenario, str]:
    """A PUT /scenario body: a scenario (YAML or JSON), or ``{name: NAME}`` (optionally with
    ``seed``) for a shipped one. Returns (scenario, source); raises ScenarioError."""
    try:
        doc = yamlsource.parse(text)
    except yamlsource.YamlSourceError as exc:
        raise ScenarioError(BODY_SOURCE, exc.problems) from None
    data = doc.data
    if isinstance(data, dict):
        runtime = [k for k in RUNTIME_KEYS if k in data]
        if runtime:
            data = {k: v for k, v in data.items() if k not in RUNTIME_KEYS}
            text = json.dumps(data)  # locations are lost, but these bodies came from a GET
        if "name" in data and "rules" not in data and "phases" not in data:
            return _shipped(data)
    return scenario_mod.load_text(text, BODY_SOURCE, default_name="api"), "PUT /scenario"


def _shipped(data: dict[str, Any]) -> tuple[Scenario, str]:
    extra = sorted(set(data) - {"name", "seed"})
    if extra:
        raise ScenarioError(
            BODY_SOURCE,
            [
                yamlsource.Problem(
                    extra[0],
                    "a body without rules or phases names a shipped scenario: give name "
                    "(and seed) only, or the whole scenario",
                )
            ],
        )
    name, seed = data["name"], data.get("seed")
    if not isinstance(name, str):
        raise ScenarioError(BODY_SOURCE, [yamlsource.Problem("name", "must be a string")])
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ScenarioError(BODY_SOURCE, [yamlsource.Problem("seed", "must be an integer")])
    # shipped names only: the API never reads other files from the proxy's disk
    entries = {entry.name: entry for entry in scenario_mod.shipped()}
    entry = entries.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, entries, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScenarioError(
            BODY_SOURCE,
            [
                yamlsource.Problem(
                    "name",
                    f"no shipped scenario named {name!r}{hint}; shipped: {', '.join(entries)}",
                )
            ],
        )
    found, path = entry.load(), entry.path
    if seed is not None:
        found = found.model_copy(update={"seed": seed})
    return found, str(path)


# --------------------------------------------------------------------------- HTTP


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(status: int, doc: Any, **headers: str) -> Reply:
        return Reply(status, (json.dumps(doc) + "\n").encode(), headers=dict(headers))

    @staticmethod
    def error(status: int, message: str, **extra: Any) -> Reply:
        return Reply.json(status, {"error": message, **extra})


Handler = Callable[[Request], Reply]


class ControlServer:
    """The admin HTTP server of one :class:`~chaosproxy.proxy_addons.chaos.ChaosAddon`."""

    def __init__(self, addon: ChaosAddon, host: str, port: int, token: str | None = None) -> None:
        check_admin(host, token)
        self.addon = addon
        self.host = host
        self.port = port
        self.token = token or None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.routes: dict[str, dict[str, Handler]] = {
            "/healthz": {"GET": self.healthz},
            "/scenario": {"GET": self.get_scenario, "PUT": self.put_scenario},
            "/scenarios": {"GET": self.get_scenarios},
            "/scenario/phase": {"POST": self.post_phase},
            "/pause": {"POST": self.post_pause},
            "/resume": {"POST": self.post_resume},
            "/stats": {"GET": self.get_stats},
            "/reset": {"POST": self.post_reset},
            "/metrics": {"GET": self.get_metrics},
            "/decisions": {"GET": self.get_decisions},
            "/explain": {"POST": self.post_explain},
        }

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve (raises OSError when the address is taken)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    # ------------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                reply, keep = await self._one(conn, reader, writer)
                if reply is None:
                    break
                await self._send(conn, writer, reply, keep)
                if not keep or conn.our_state is h11.MUST_CLOSE:
                    break
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # the proxy is shutting down; ending quietly keeps asyncio (3.11) from logging
            # the cancelled connection task as an error
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
            conn.receive_data(data)

    async def _one(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Reply | None, bool]:
        """Read one request and answer it; (None, False) when the client is gone."""
        try:
            event = await self._next(conn, reader)
            if isinstance(event, h11.ConnectionClosed):
                return None, False
            assert isinstance(event, h11.Request)
            target = urlsplit(event.target.decode("latin-1"))
            request = Request(
                method=event.method.decode("ascii").upper(),
                path=target.path.rstrip("/") or "/",
                query=dict(parse_qsl(target.query)),
                headers={
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers
                },
            )
            refused = self._refuse(request)
            if refused is not None:
                return refused, False
            size = request.headers.get("content-length")
            if size is not None and size.isdigit() and int(size) > MAX_BODY:
                return Reply.error(413, f"the body is over {MAX_BODY} bytes"), False
            if conn.they_are_waiting_for_100_continue:
                # a client that sent Expect (curl does for large bodies) waits for this
                # before the body, or a second without it
                go_on = h11.InformationalResponse(status_code=100, headers=[])
                writer.write(conn.send(go_on) or b"")
            chunks: list[bytes] = []
            total = 0
            while True:
                event = await self._next(conn, reader)
                if isinstance(event, h11.Data):
                    total += len(event.data)
                    if total > MAX_BODY:
                        return Reply.error(413, f"the body is over {MAX_BODY} bytes"), False
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return None, False
            request.body = b"".join(chunks)
        except h11.RemoteProtocolError as exc:
            if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                return None, False
            return Reply.error(exc.error_status_hint, f"bad request: {exc}"), False
        return self.dispatch(request), True

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply, keep: bool
    ) -> None:
        headers = [
            ("content-type", reply.content_type),
            ("content-length", str(len(reply.body))),
            ("cache-control", "no-store"),
            *reply.headers.items(),
        ]
        if not keep:
            headers.append(("connection", "close"))
        try:
            data = conn.send(h11.Response(status_code=reply.status, headers=headers))
            data = (data or b"") + (conn.send(h11.Data(data=reply.body)) or b"")
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return
        writer.write(data)
        await writer.drain()

    # ------------------------------------------------------------------ policy and routing

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
                return Reply(
                    401,
                    (
                        json.dumps(
                            {"error": "missing or wrong token: send Authorization: Bearer T"}
                        )
                        + "\n"
                    ).encode(),
                    headers={"www-authenticate": 'Bearer realm="chaosproxy"'},
                )
            return None
        host = request.headers.get("host", "")
        hostname = urlsplit(f"//{host}").hostname or ""
        if not is_loopback(hostname):
            return Reply.error(
                403,
                f"Host {host!r} is not a loopback name; without --admin-token the control "
                "API answers only to 127.0.0.1, ::1 or localhost",
            )
        return None

    def dispatch(self, request: Request) -> Reply:
        methods = self.routes.get(request.path)
        if methods is None:
            return Reply.error(404, f"no endpoint {request.path}", endpoints=sorted(self.routes))
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return Reply.json(
                405,
                {"error": f"{request.method} is not allowed on {request.path}; use {allowed}"},
                allow=allowed,
            )
        try:
            return handler(request)
        except Exception as exc:  # a bug must not take the proxy (or the connection) down
            logger.exception("control API %s %s failed", request.method, request.path)
            return Reply.error(500, f"internal error: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ endpoints

    def healthz(self, request: Request) -> Reply:
        if not self.addon.ready.is_set():
            return Reply.json(503, {"status": "starting"})
        return Reply.json(200, {"status": "ok", "scenario": self.addon.engine.scenario.label})

    def get_scenario(self, request: Request) -> Reply:
        return Reply.json(200, scenario_state(self.addon))

    def get_scenarios(self, request: Request) -> Reply:
        return Reply.json(200, shipped_list(self.addon.engine.scenario.label))

    def put_scenario(self, request: Request) -> Reply:
        text = _text(request)
        if text is None or not text.strip():
            return Reply.error(
                400,
                'give the scenario as the body (YAML or JSON), or {"name": NAME}',
                problems=[f"{BODY_SOURCE}: scenario: empty body"],
            )
        try:
            scenario, source = load_body(text)
        except ScenarioError as exc:
            logger.warning(
                "PUT /scenario refused (keeping scenario %s):\n%s",
                self.addon.engine.scenario.label,
                exc,
            )
            return Reply.error(
                400,
                f"invalid scenario; still running {self.addon.engine.scenario.label}",
                problems=exc.lines,
            )
        self.addon.apply(scenario, source=source)
        return Reply.json(200, scenario_state(self.addon))

    def post_phase(self, request: Request) -> Reply:
        text = _text(request) or ""
        try:
            data = yamlsource.parse(text).data if text.strip() else None
        except yamlsource.YamlSourceError as exc:
            return Reply.error(
                400,
                "the body is not YAML or JSON",
                problems=[p.format(BODY_SOURCE) for p in exc.problems],
            )
        phase = data.get("phase") if isinstance(data, dict) else request.query.get("phase")
        if not isinstance(phase, str) or not phase:
            return Reply.error(400, 'give the phase to jump to: {"phase": "NAME"}')
        try:
            self.addon.engine.jump_to(phase)
        except KeyError as exc:
            return Reply.error(400, str(exc.args[0]), phases=self.addon.engine.phase_names)
        self.addon.reschedule()
        return Reply.json(200, {"phase": phase, "phases": self.addon.engine.phase_names})

    def post_pause(self, request: Request) -> Reply:
        self.addon.engine.pause()
        logger.info("injection paused (control API): passing everything through")
        return Reply.json(200, {"paused": True})

    def post_resume(self, request: Request) -> Reply:
        self.addon.engine.resume()
        logger.info("injection resumed (control API)")
        return Reply.json(200, {"paused": False})

    def get_stats(self, request: Request) -> Reply:
        stats = self.addon.engine.stats()
        stats["held"] = self.addon.held
        stats["source"] = self.addon.engine.source
        return Reply.json(200, stats)

    def post_reset(self, request: Request) -> Reply:
        self.addon.reset()
        return Reply.json(200, self.addon.engine.stats())

    def get_metrics(self, request: Request) -> Reply:
        text = self.addon.metrics.render(metrics_state(self.addon))
        return Reply(200, text.encode(), content_type=METRICS_CONTENT_TYPE)

    def post_explain(self, request: Request) -> Reply:
        text = _text(request) or ""
        try:
            data = yamlsource.parse(text).data if text.strip() else None
        except yamlsource.YamlSourceError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return Reply.error(
                400, 'give the request: {"method": "GET", "url": URL, "headers": {...}}'
            )
        headers = data.get("headers") or {}
        pairs = headers.items() if isinstance(headers, dict) else headers
        body = data.get("body") or ""
        try:
            req = explain_request(
                str(data.get("method") or "GET"),
                data["url"],
                [(str(k), str(v)) for k, v in pairs],
                body.encode() if isinstance(body, str) else b"",
                data.get("upstream"),
            )
        except (ValueError, TypeError) as exc:
            return Reply.error(400, str(exc))
        return Reply.json(200, explain_document(self.addon.engine, req))

    def get_decisions(self, request: Request) -> Reply:
        try:
            since = int(request.query.get("since", "0"))
            limit = int(request.query["limit"]) if "limit" in request.query else None
        except ValueError:
            return Reply.error(400, "since and limit must be integers")
        records = self.addon.decisions.records(since=since, limit=limit)
        return Reply.json(200, [r.to_dict() for r in records])


def explain_request(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    upstream: str | None = None,
) -> SimpleRequest:
    """The request ``explain`` asks about (raises ValueError for a URL without a host)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ValueError(f"{url!r} is not a URL")
    return SimpleRequest(
        method=method.upper(),
        host=parts.hostname,
        path=unquote(parts.path or "/"),
        headers=list(headers),
        query_pairs=parse_qsl(parts.query, keep_blank_values=True),
        content=body,
        upstream=upstream,
    )


def explain_document(engine: Engine, request: SimpleRequest) -> dict[str, Any]:
    """What each rule of the active phase would do with ``request`` next (changes nothing)."""
    verdicts = engine.explain(request)
    fires = next((v.rule for v in verdicts if v.fires), None)
    return {
        "scenario": engine.scenario.label,
        "source": engine.source,
        "phase": engine.phase,
        "seed": engine.seed,
        "paused": engine.paused,
        "verdicts": [asdict(v) for v in verdicts],
        "fires": fires,
    }


def _text(request: Request) -> str | None:
    try:
        return request.body.decode("utf-8")
    except UnicodeDecodeError:
        return None
