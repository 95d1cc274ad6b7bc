"""ChaosAddon: the mitmproxy addon that injects a scenario's faults.

Used by ``chaosproxy run`` and the Python API, and on its own inside plain mitmproxy::

    mitmdump -s proxy_addons/chaos.py --set chaos_scenario=flaky

mitmproxy loads this file by path, so it imports the installed package absolutely.
The addon only adapts flows to the engine (which decides) and to the faults (which act).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Optional

from mitmproxy import http
from mitmproxy.exceptions import OptionsError

from chaosproxy.control.server import (
    TOKEN_ENV,
    AdminConfigError,
    ControlServer,
    check_admin,
    parse_admin,
)
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.decisions import (
    IDEMPOTENCY_HEADER,
    DecisionLog,
    DecisionRecord,
    JsonLinesWriter,
    parse_retry_after,
    request_key,
)
from chaosproxy.core.engine import Decision, Engine, Event
from chaosproxy.core.metrics import Metrics
from chaosproxy.core.scenario import PASSTHROUGH, Scenario, ScenarioError, resolve
from chaosproxy.faults import Stage
from chaosproxy.proxy_addons._internals import warmup
from chaosproxy.proxy_addons.relay import Relay
from chaosproxy.proxy_addons.watch import Watcher
from chaosproxy.proxy_addons.wire import (
    FlowRequest,
    FlowWire,
    KernelStamps,
    head_waiting,
    resolve_future,
    wait_future,
)

logger = logging.getLogger("chaosproxy")

METADATA_KEY = "chaos"
ANNOTATION_HEADER = "X-Chaos-Rule"

#: Bodies from this size (or of unknown length) stream through instead of being held whole
#: in memory, whenever no fault needs them.
STREAM_FROM = 64 * 1024


class ChaosAddon:
    """Decides per request with the engine and applies the chosen faults to the flow."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        source: str | None = None,
        seed: int | None = None,
        upstream_names: Mapping[str, str] | None = None,
        admin: tuple[str, int] | None = None,
        admin_token: str | None = None,
        admin_required: bool = True,
    ) -> None:
        self.engine = Engine(
            scenario or PASSTHROUGH, seed=seed, source=source, on_event=self._event
        )
        #: listener spec (mitmproxy mode full_spec) -> upstream NAME, with several upstreams
        self.upstream_names = dict(upstream_names or {})
        self.ready = threading.Event()
        self._ready_callbacks: list[Callable[[], object]] = []
        #: requests wait while the proxy is held: ``serve()`` holds it until it has
        #: announced itself (its engine started); ``mitmdump -s`` never holds it
        self._is_open = True
        self._open_waiters: list[asyncio.Future[None]] = []
        self._master: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wires: dict[str, FlowWire] = {}
        #: flows decided from the request head (their body may stream): flow id -> decision
        self._early: dict[str, Decision | None] = {}
        #: client id -> when its first request's whole head already waited as the connection
        #: was set up; flow id -> that time, for that first request (see :meth:`arrival`)
        self._data_since: dict[str, float] = {}
        self._arrivals: dict[str, float] = {}
        self._stamps = KernelStamps()
        self._waiters: dict[str, set[asyncio.Future[bool | None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        #: loopback relay that paces throttled answers (listens only once one is needed)
        self.relay = Relay()
        self._ssl_context: tuple[tuple[str | None, str | None, bool], ssl.SSLContext] | None = None
        #: every request seen, newest last (see proxy_addons/decisions.py)
        self.decisions = DecisionLog()
        self.metrics = Metrics()
        self.decisions.subscribe(self.metrics)
        self._writers: list[JsonLinesWriter] = []
        #: the control API's address (None: none), token, and whether failing to bind it
        #: stops the proxy (an explicit --admin) or only warns (the default address)
        self.admin = admin
        self.admin_token = admin_token
        self.admin_required = admin_required
        self.control: ControlServer | None = None
        self.control_error: str | None = None
        #: flows held in other processes (``--workers``: the coordinator adds its workers')
        self.held_elsewhere = 0
        #: log what was injected when the proxy stops (not in ``--workers`` workers: their
        #: coordinator has the one engine)
        self.summary_at_exit = True
        #: called after a scenario is applied (``--workers``: tell the workers)
        self.on_apply: Callable[[], object] | None = None
        #: with --watch: the scenario file to apply again whenever it changes
        self.watch_path: str | None = None
        self._watcher: Watcher | None = None

    # ------------------------------------------------------------------ mitmproxy hooks

    def load(self, loader: Any) -> None:
        self._master = loader.master
        loader.add_option(
            "chaos_scenario",
            Optional[str],  # noqa: UP045 - mitmproxy compares option types to typing.Optional
            None,
            "Scenario file, or the name of a shipped scenario (e.g. flaky).",
        )
        loader.add_option(
            "chaos_seed",
            Optional[int],  # noqa: UP045
            None,
            "Seed for the scenario's random decisions; overrides the file's seed.",
        )
        loader.add_option(
            "chaos_admin",
            str,
            "",
            "Serve chaosproxy's control API on HOST:PORT (e.g. 127.0.0.1:8475); empty: off.",
        )
        loader.add_option(
            "chaos_admin_token",
            str,
            "",
            "Bearer token the control API requires (needed beyond loopback); "
            f"default ${TOKEN_ENV}.",
        )
        loader.add_option(
            "chaos_watch",
            bool,
            False,
            "Apply chaos_scenario again whenever its file changes (a broken edit is logged).",
        )
        loader.add_option(
            "chaos_decision_log",
            str,
            "",
            "Append a JSON line per request (chaosproxy's decision log) to this file.",
        )

    def configure(self, updated: set[str]) -> None:
        if self._master is None:
            return
        opts = self._master.options
        self._configure_outputs(updated, opts)
        if not updated & {"chaos_scenario", "chaos_seed"}:
            return
        if "chaos_seed" in updated:
            self.engine.seed_override = opts.chaos_seed
        spec = opts.chaos_scenario
        if spec:
            try:
                scenario, path = resolve(spec)
            except ScenarioError as exc:
                # Logged, not raised: mitmproxy prints a script's exceptions with their
                # traceback. mitmdump refuses to start on an error logged during startup;
                # a running proxy keeps its current scenario.
                logger.error(
                    "cannot load chaos_scenario %s (keeping scenario %s):\n%s",
                    spec,
                    self.engine.scenario.label,
                    exc,
                )
                return
            self.apply(scenario, source=str(path))
        elif "chaos_seed" in updated:
            self.apply(self.engine.scenario, source=self.engine.source)

    def _configure_outputs(self, updated: set[str], opts: Any) -> None:
        """The mitmdump options for the control API and the decision log (``chaosproxy run``
        passes them to the constructor instead). Empty values leave the addon's alone."""
        if "chaos_admin" in updated and opts.chaos_admin:
            try:
                self.admin = parse_admin(opts.chaos_admin)
            except AdminConfigError as exc:
                raise OptionsError(f"chaos_admin: {exc}") from None
        if "chaos_admin_token" in updated or "chaos_admin" in updated:
            self.admin_token = opts.chaos_admin_token or os.environ.get(TOKEN_ENV) or None
            if self.admin is not None:
                try:
                    check_admin(self.admin[0], self.admin_token)
                except AdminConfigError as exc:
                    raise OptionsError(f"chaos_admin: {exc}") from None
        if updated & {"chaos_watch", "chaos_scenario"} and opts.chaos_watch:
            if not opts.chaos_scenario:
                raise OptionsError("chaos_watch: set chaos_scenario to the file to watch")
            try:
                self.watch_path = str(scenario_mod.find(opts.chaos_scenario))
            except ScenarioError as exc:
                raise OptionsError(f"chaos_watch: {exc}") from None
        if "chaos_decision_log" in updated and opts.chaos_decision_log:
            try:
                self.log_decisions_to(opts.chaos_decision_log)
            except OSError as exc:
                raise OptionsError(f"chaos_decision_log: {exc}") from None

    def log_decisions_to(self, path: str) -> JsonLinesWriter:
        """Append each decision record to ``path`` as a JSON line (raises OSError)."""
        writer = JsonLinesWriter(path)
        self._writers.append(writer)
        self.decisions.subscribe(writer)
        return writer

    async def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stamps.start()
        self.engine.start()  # logs "phase X begins" for a timeline
        self._schedule()
        await self._start_control()
        if self.watch_path is not None and self._watcher is None:
            self._watcher = Watcher(self.watch_path, self.apply, lambda: self.engine.scenario.label)
            self._watcher.start()
        self.ready.set()
        for callback in self._ready_callbacks:
            callback()

    def hold(self) -> None:
        """Requests wait until :meth:`open` (``serve()`` holds them during startup)."""
        self._is_open = False

    def open(self) -> None:
        """Let requests through (those that arrived during startup wait for this)."""
        self._is_open = True
        waiters, self._open_waiters = self._open_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _request_when_open(self, flow: http.HTTPFlow) -> None:
        if not self._is_open:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._open_waiters.append(fut)
            await fut
        result = self.request(flow)
        if result is not None:
            await result

    def client_connected(self, client: Any) -> None:
        handler = self.connection_handler(client.id)
        if handler is not None:
            since = head_waiting(handler)
            if since is not None:
                self._data_since[client.id] = since

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._data_since.pop(flow.client_conn.id, None)  # those bytes were the CONNECT

    def note_arrival(self, flow: http.HTTPFlow) -> None:
        """Remember when a connection's first request really arrived (see :meth:`arrival`)."""
        since = self._data_since.pop(flow.client_conn.id, None)
        request = flow.request
        if (
            since is not None
            and since < request.timestamp_start
            and not flow.client_conn.tls
            and request.http_version in ("HTTP/1.1", "HTTP/1.0")
        ):
            self._arrivals[flow.id] = since

    def arrival(self, flow: http.HTTPFlow) -> float:
        """When the request arrived at the proxy; delays count from here.

        mitmproxy stamps a request when it has parsed its head, which under load can be
        well after its bytes came in: a burst of new connections is set up one after the
        other before any of their requests is read. When the whole head of a plain HTTP/1
        connection's first request already waited as the connection was set up, the
        moment the kernel received it is the arrival, or where the kernel cannot say,
        that set-up (the request was there by then, so no delay comes out shorter than
        asked from the client's point of view).
        """
        return self._arrivals.get(flow.id, flow.request.timestamp_start)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Let a large request body stream upstream when no rule needs it to decide."""
        if self._data_since:
            self.note_arrival(flow)
        if flow.response or flow.error or not flow.live or not _large(flow.request, True):
            return
        if not self._is_open:
            return  # decided in the request hook, once the proxy is open
        decided, decision = self.engine.decide_without_body(self._view(flow))
        if not decided:
            return  # a rule matches on the body: it is read whole before deciding
        self._early[flow.id] = decision
        if decision is None:
            flow.request.stream = True

    def request(self, flow: http.HTTPFlow) -> Any:
        if not self._is_open:
            return self._request_when_open(flow)
        early = self._early.pop(flow.id, _UNDECIDED)
        if flow.response or flow.error or not flow.live:
            return None
        frame_h2_body(flow.request)
        if early is _UNDECIDED:
            decision = self.engine.decide(self._view(flow))
        else:
            decision = early
        return self._inject(flow, decision)

    def _inject(self, flow: http.HTTPFlow, decision: Decision | None) -> Any:
        """Apply ``decision`` (None: untouched) to the flow; its request-stage faults are
        returned as a coroutine for mitmproxy to await."""
        if decision is None:
            return None
        wire = FlowWire(self, flow, decision)
        self._wires[flow.id] = wire
        fault = decision.rule.describe()
        flow.metadata[METADATA_KEY] = {
            "rule": decision.name,
            "fault": fault,
            "phase": decision.phase,
            "match": decision.match_number,
            "seed": decision.seed,
        }
        flow.marked = ":zap:"
        flow.comment = f"chaosproxy: rule {decision.name} injected {fault}"
        method, url = flow.request.method, flow.request.pretty_url
        logger.info(
            "injected %s [%s] into %s %s",
            decision.name,
            fault,
            method,
            url,
            # --log-format json: these become fields of the line
            extra={
                "chaos": {
                    "event": "injected",
                    "rule": decision.name,
                    "fault": fault,
                    "phase": decision.phase,
                    "method": method,
                    "url": url,
                }
            },
        )
        if wire.has(Stage.REQUEST):
            return wire.run(Stage.REQUEST)
        return None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Stream a throttled answer (its relay paces the body), and a large one when no
        fault acts on it."""
        wire = self._wires.get(flow.id)
        response = flow.response
        if response is None or flow.error or not flow.live:
            return
        paced = wire is not None and wire.streaming()
        if not paced and not _large(response, False):
            return
        if wire is not None:
            if wire.has(Stage.RESPONSE):
                return
            if self.engine.scenario.annotate:  # the response hook comes after the body
                response.headers[ANNOTATION_HEADER] = wire.rule
        if not response.stream:
            response.stream = True

    def response(self, flow: http.HTTPFlow) -> Any:
        wire = self._wires.get(flow.id)
        if wire is None:
            self._record(flow, None)
            return None
        if flow.response is not None and not wire.answered_early:
            wire.upstream_status = flow.response.status_code
        if self.engine.scenario.annotate and flow.response is not None:
            flow.response.headers[ANNOTATION_HEADER] = wire.rule
        if wire.has(Stage.RESPONSE):
            return self._finish(flow, wire)
        self._wires.pop(flow.id, None)
        self._record(flow, wire)
        return None

    async def _finish(self, flow: http.HTTPFlow, wire: FlowWire) -> None:
        try:
            await wire.run(Stage.RESPONSE)
        finally:
            self._wires.pop(flow.id, None)
            # recorded here even when a fault killed the flow: mitmproxy runs no error hook
            # for a flow killed in the response hook
            self._record(flow, wire)

    def error(self, flow: http.HTTPFlow) -> None:
        self._early.pop(flow.id, None)
        wire = self._wires.pop(flow.id, None)
        if wire is not None:
            wire.forget_route()
        self._record(flow, wire)

    def _record(self, flow: http.HTTPFlow, wire: FlowWire | None) -> None:
        """Add the finished request to the decision log (it never reached the request hook:
        nothing to record)."""
        request = flow.request
        arrived = self._arrivals.pop(flow.id, request.timestamp_start)
        if request.timestamp_end is None or request.method == "CONNECT":
            return
        now_wall, now_mono = time.time(), time.monotonic()
        error = flow.error.msg if flow.error is not None else None
        status: int | None = None
        if wire is not None and wire.outcome is not None:
            outcome = wire.outcome
            if outcome == "truncated" and flow.response is not None:
                status = flow.response.status_code  # a status, then part of the body
        elif error is not None:
            if error == flow.error.KILLED_MESSAGE:  # type: ignore[union-attr]
                outcome = "closed"
            elif error.startswith("Client disconnected"):
                outcome = "client_disconnected"
            else:  # e.g. the upstream refused: mitmproxy answers 502 with the reason
                outcome, status = "error", 502
        elif flow.response is not None:
            outcome, status = "response", flow.response.status_code
        else:
            outcome = "closed"
        if wire is None:
            upstream_status = status if outcome == "response" else None
        else:
            upstream_status = wire.upstream_status
        body = request.raw_content or b""
        decision = wire.decision if wire is not None else None
        if decision is not None:  # mitmweb shows what the client got, next to the rule
            got = outcome if status is None else f"{outcome} {status}"
            flow.comment = f"{flow.comment} -> client got: {got}"
            chaos = flow.metadata.get(METADATA_KEY)
            if isinstance(chaos, dict):
                chaos["outcome"], chaos["status"] = outcome, status
        method, url = request.method, request.pretty_url  # each costs header look-ups: once
        self.decisions.add(
            DecisionRecord(
                seq=self.decisions.next_seq(),
                time=arrived,
                monotonic=now_mono - (now_wall - arrived),
                duration=max(0.0, now_wall - arrived),
                method=method,
                url=url,
                host=request.host,
                path=FlowRequest(flow, None).path,
                request_key=request_key(method, url, body, request.headers.get(IDEMPOTENCY_HEADER)),
                rule=decision.name if decision is not None else None,
                faults=tuple(f.type for f in decision.faults) if decision is not None else (),
                fault=decision.rule.describe() if decision is not None else None,
                phase=decision.phase if decision is not None else self.engine.phase,
                outcome=outcome,
                status=status,
                upstream_status=upstream_status,
                added_latency=wire.added_latency if wire is not None else 0.0,
                error=error,
                flow_id=flow.id,
                retry_after=parse_retry_after(
                    flow.response.headers.get("retry-after") if flow.response else None,
                    now_wall,
                )
                if outcome == "response"
                else None,
            )
        )

    def client_disconnected(self, client: Any) -> None:
        self._data_since.pop(client.id, None)
        warmup.discard(client.id)
        for fut in self._waiters.pop(client.id, ()):
            resolve_future(fut, False)

    async def _start_control(self) -> None:
        if self.admin is None or self.control is not None:
            return
        host, port = self.admin
        try:
            server = ControlServer(self, host, port, self.admin_token)
            await server.start()
        except (AdminConfigError, OSError) as exc:
            message = f"cannot start the control API on {host}:{port}: {exc}"
            if self.admin_required:
                self.control_error = message
                logger.error("%s", message)
            else:
                logger.warning("%s; running without it (give --admin HOST:PORT)", message)
            return
        self.control = server

    @property
    def admin_url(self) -> str | None:
        """The control API's base URL, once it serves (None without one)."""
        return self.control.url if self.control is not None else None

    def done(self) -> None:
        self.open()
        if self._timer is not None:
            self._timer.cancel()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self.release_all()
        for writer in self._writers:
            writer.close()
        self.relay.close()
        self._stamps.stop()
        for line in summary_lines(self.engine) if self.summary_at_exit else ():
            logger.info("%s", line)

    def _view(self, flow: http.HTTPFlow) -> FlowRequest:
        upstream = (
            self.upstream_names.get(flow.client_conn.proxy_mode.full_spec)
            if self.upstream_names
            else None
        )
        return FlowRequest(flow, upstream)

    # ------------------------------------------------------------------ for faults and callers

    def when_ready(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (on the proxy's loop) once the listeners are bound."""
        self._ready_callbacks.append(callback)

    async def wait_for_client(self, client_id: str, timeout: float | None) -> bool | None:
        """Wait ``timeout`` seconds (None: forever). True when the time passed, False when the
        client disconnected first, None when the proxy is stopping."""
        assert self._loop is not None
        fut = wait_future(self._loop, timeout)
        waiters = self._waiters.setdefault(client_id, set())
        waiters.add(fut)
        try:
            return await fut
        finally:
            waiters.discard(fut)
            if not waiters and self._waiters.get(client_id) is waiters:
                del self._waiters[client_id]

    def upstream_ssl_context(self) -> ssl.SSLContext:
        """TLS to the upstream for relayed (throttled) flows, verified as mitmproxy would:
        ``ssl_insecure`` and ``ssl_verify_upstream_trusted_ca`` / ``..._confdir`` apply."""
        opts = self._master.options if self._master is not None else None
        settings = (
            getattr(opts, "ssl_verify_upstream_trusted_ca", None) or None,
            getattr(opts, "ssl_verify_upstream_trusted_confdir", None) or None,
            bool(getattr(opts, "ssl_insecure", False)),
        )
        if self._ssl_context is None or self._ssl_context[0] != settings:
            cafile, capath, insecure = settings
            ctx = ssl.create_default_context(cafile=cafile, capath=capath)
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_context = (settings, ctx)
        return self._ssl_context[1]

    def connection_handler(self, client_id: str) -> Any:
        """mitmproxy's handler of a client connection (internal API), or None."""
        proxyserver = self._master.addons.get("proxyserver") if self._master else None
        return proxyserver.connections.get(client_id) if proxyserver else None

    @property
    def held(self) -> int:
        """Flows currently waiting in a fault (delayed or held)."""
        return sum(len(w) for w in self._waiters.values()) + self.held_elsewhere

    @property
    def in_flight(self) -> int:
        """Flows a rule fired for that are not finished yet."""
        return len(self._wires)

    def release_all(self) -> None:
        """End every wait: the proxy is stopping, so held flows are let go (and closed)."""
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for fut in futures:
                resolve_future(fut, None)

    def reset(self) -> None:
        """``POST /reset``: counters, rate windows and the phase clock back to zero, and the
        decision ring emptied (metrics counters keep growing, as Prometheus expects)."""
        self.engine.reset()
        self.decisions.clear()
        logger.info("counters reset")
        self.reschedule()

    def apply(self, scenario: Scenario, source: str | None = None) -> None:
        """Make ``scenario`` the active one (thread-safe)."""
        self.engine.apply(scenario, source)
        if self.on_apply is not None:
            self.on_apply()
        logger.info(
            "scenario %s applied (seed %d, %d rules)",
            scenario.label,
            self.engine.seed,
            sum(1 for _ in scenario.all_rules()),
        )
        self.reschedule()

    # ------------------------------------------------------------------ timeline

    def _event(self, event: Event) -> None:
        logger.info("%s", event.message)
        self.reschedule()

    def reschedule(self) -> None:
        """Re-arm the timer for the next phase boundary or ttl expiry (thread-safe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule()
        else:
            loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        delay = self.engine.next_change_in()
        if delay is not None and self._loop is not None:
            self._timer = self._loop.call_later(delay + 0.001, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.engine.tick()
        if self._timer is None:
            self._schedule()


_UNDECIDED: Any = object()


def frame_h2_body(request: http.Request) -> None:
    """Give an HTTP/2 request body a Content-Length when the client sent none.

    HTTP/2 frames bodies itself; mitmproxy forwards such a request to an HTTP/1.1 upstream
    with neither Content-Length nor Transfer-Encoding, and the upstream reads no body.
    """
    if (
        request.http_version.startswith(("HTTP/2", "HTTP/3"))
        and request.raw_content
        and "content-length" not in request.headers
    ):
        request.headers["content-length"] = str(len(request.raw_content))


def _large(message: http.Message, request: bool) -> bool:
    """A body of at least STREAM_FROM bytes, or of unknown length (chunked, read to close).

    An HTTP/1 request without Content-Length or Transfer-Encoding has no body at all; an
    HTTP/2 one without Content-Length is read whole (see :func:`frame_h2_body`).
    """
    length = message.headers.get("content-length")
    if length is not None:
        return not length.isdigit() or int(length) >= STREAM_FROM
    if "transfer-encoding" in message.headers:
        return True
    return not request


def summary_lines(engine: Engine) -> list[str]:
    """What was injected, per rule, and which rules never matched (likely typos)."""
    stats = engine.stats()
    lines = [
        f"summary: {stats['injected']} faults injected into {stats['requests']} requests "
        f"(scenario {stats['scenario']}, seed {stats['seed']})"
    ]
    never: list[str] = []
    for rule in stats["rules"]:
        where = f" in phase {rule['phase']}" if rule["phase"] else ""
        if rule["seen"] == 0:
            never.append(f"  {rule['name']}{where}: {rule['fault']}")
            continue
        counts = f"matched {rule['seen']}, injected {rule['injected']}"
        lines.append(f"  {rule['name']}{where}: {rule['fault']}: {counts}")
    if never:
        lines.append("rules that never matched (check their match blocks):")
        lines.extend(never)
    return lines


addons = [ChaosAddon()]
