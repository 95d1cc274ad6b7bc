"""ChaosAddon: the mitmproxy addon that injects a scenario's faults.

Used by ``chaosproxy run`` and the Python API, and on its own inside plain mitmproxy::

    mitmdump -s proxy_addons/chaos.py --set chaos_scenario=flaky

mitmproxy loads this file by path, so it imports the installed package absolutely. Thin
hooks over small collaborators: a :class:`~.decider.Decider` decides (the engine, or a
``--workers`` coordinator), faults act on a :class:`~.wire.FlowWire` (through a
:class:`~.flowhost.FlowHost`); the decision recorder, arrival clock, phase timeline,
start-up gate, services (control API, ``--watch``) and the upstream's deadlines and
health (:class:`~.upstream.Upstream`) each live in their own module.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mitmproxy import http
from mitmproxy.exceptions import OptionsError

from chaosproxy.core.engine import Decision, Engine
from chaosproxy.core.fault import Stage
from chaosproxy.core.scenario import PASSTHROUGH, Scenario
from chaosproxy.proxy_addons import _internals, chaos_options
from chaosproxy.proxy_addons.asked import AskedFaults
from chaosproxy.proxy_addons.bodies import frame_h2_body, is_large
from chaosproxy.proxy_addons.decider import Decider, StateDecider
from chaosproxy.proxy_addons.flowhost import FlowHost
from chaosproxy.proxy_addons.gate import StartupGate
from chaosproxy.proxy_addons.recorder import DecisionRecorder, summary_lines
from chaosproxy.proxy_addons.services import ControlService, WatchService
from chaosproxy.proxy_addons.timeline import PhaseTimeline
from chaosproxy.proxy_addons.upstream import Upstream
from chaosproxy.proxy_addons.upstream_connect import (
    HandshakeWire,
    handshake_view,
    tunnel_opened,
)
from chaosproxy.proxy_addons.websocket import WebSockets
from chaosproxy.proxy_addons.wire import FlowRequest, FlowWire
from chaosproxy.state import MemoryState, ScenarioState, StateError, open_state

logger = logging.getLogger("chaosproxy")

ANNOTATION_HEADER = "X-Chaos-Rule"
_UNDECIDED: Any = object()


class ChaosAddon:
    """Asks its decider per request and applies the chosen faults to the flow."""

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
        self.engine = Engine(scenario or PASSTHROUGH, seed=seed, source=source)
        self.timeline = PhaseTimeline(self.engine)
        self.engine.on_event = self.timeline.on_event
        #: where counters, windows and the phase clock live (``--state``: shared in Redis)
        self.state: ScenarioState = MemoryState(self.engine)
        self.decider: Decider = StateDecider(self.state)
        #: listener spec (mitmproxy mode full_spec) -> upstream NAME, with several upstreams
        self.upstream_names = dict(upstream_names or {})
        self.ready = threading.Event()
        self._ready_callbacks: list[Callable[[], object]] = []
        self.gate = StartupGate()
        self.recorder = DecisionRecorder()
        self.decisions, self.metrics = self.recorder.log, self.recorder.metrics
        self.host = FlowHost()
        self.arrivals, self.relay = self.host.arrivals, self.host.relay
        self.control = ControlService(admin, admin_token, admin_required)
        self.watch = WatchService()
        self.upstream = Upstream(self.host.connection_handler)
        self.deadlines = self.upstream.deadlines  # ``--upstream-timeout`` sets its timeouts
        self._wires: dict[str, FlowWire] = {}
        #: clients that sent a CONNECT: their connect-time rules were decided there
        self._tunneled: set[str] = set()
        #: upgraded flows a ws_* rule fired for: their messages meet its faults
        self.sockets = WebSockets(lambda: self.host.master, self._record)
        #: X-Chaos-Fault headers, when the scenario says request_faults: true
        self.asked = AskedFaults(self.engine, lambda: self.control.token, self.metrics)
        #: flows decided from the request head (their body may stream): flow id -> decision
        self._early: dict[str, Decision | None] = {}
        #: flows held in other processes (``--workers``: the coordinator adds its workers')
        self.held_elsewhere = 0
        #: log what was injected when the proxy stops (not in ``--workers`` workers)
        self.summary_at_exit = True
        #: called after a scenario is applied (``--workers``: tell the workers)
        self.on_apply: Callable[[], object] | None = None

    # ------------------------------------------------------------------ mitmproxy hooks

    def load(self, loader: Any) -> None:
        self.host.attach(loader.master)
        chaos_options.declare(loader)

    def configure(self, updated: set[str]) -> None:
        if self.host.master is None:
            return
        opts = self.host.master.options
        if "chaos_state" in updated and opts.chaos_state:
            self._configure_state(opts.chaos_state)
        chaos_options.configure_services(
            updated, opts, self.control, self.watch, self.recorder, self.deadlines
        )
        found = chaos_options.configured_scenario(updated, opts, self.engine, self.serving)
        if found is not None:
            self.apply(*found)

    def _configure_state(self, spec: str) -> None:
        """``--set chaos_state=redis://...`` (mitmdump -s), before the proxy runs."""
        if self.host.loop is not None:
            raise OptionsError("chaos_state is set at start only (the proxy already runs)")
        try:
            self.use_state(spec)
        except StateError as exc:
            raise OptionsError(f"Cannot use chaos_state {spec}: {exc}") from exc

    async def running(self) -> None:
        self.host.loop = asyncio.get_running_loop()
        self.arrivals.start()
        await self.state.start()
        self.timeline.start(self.host.loop)
        await self.state.join()  # the cluster's scenario, or ours shared as the cluster's
        await self.control.start(self)
        self.watch.start(self.apply, lambda: self.engine.scenario.label)
        self.ready.set()
        for callback in self._ready_callbacks:
            callback()

    def client_connected(self, client: Any) -> None:
        self.arrivals.connected(client.id, self.host.connection_handler(client.id))

    def http_connect(self, flow: http.HTTPFlow) -> Any:
        self.arrivals.forget_client(flow.client_conn.id)  # those bytes were the CONNECT
        self._tunneled.add(flow.client_conn.id)
        if flow.response or flow.error or not flow.live or not self.gate.is_open:
            return None
        if not self.engine.decides_at("connect"):
            return None
        decision = self.decider.decide(self._view(flow, "connect"), flow.request)
        if decision is None or isinstance(decision, Decision):
            return self._connect(flow, decision)
        return _then(decision, lambda decided: self._connect(flow, decided))

    def _connect(self, flow: http.HTTPFlow, decision: Decision | None) -> Any:
        """Apply a connect-time decision to a CONNECT: refused, delayed, or its tunnel's
        handshake made to fail; recorded at once (the tunnel's requests are their own)."""
        if decision is None:
            return None
        wire = FlowWire(self.host, flow, decision)
        self.recorder.tag(flow, decision)

        async def act() -> None:
            await wire.run(Stage.CONNECT)
            if flow.response is None and flow.live and not wire.ended:
                flow.response = tunnel_opened(flow.request)  # what mitmproxy answers
            self._record(flow, wire)

        return act()

    def tls_clienthello(self, data: Any) -> Any:
        """A reverse-mode client starts TLS: decide its handshake faults (a tunnel's were
        decided at its CONNECT)."""
        client = data.context.client
        if client.id in self._tunneled or not self.gate.is_open:
            return None
        if not self.engine.decides_at("handshake"):
            return None
        found = handshake_view(data.context, self.upstream_names)
        if found is None:
            return None
        view, address = found
        decision = self.decider.decide(view, None)
        if decision is None or isinstance(decision, Decision):
            return self._handshake(client.id, address, decision)
        return _then(decision, lambda d: self._handshake(client.id, address, d))

    def _handshake(self, client_id: str, address: tuple[str, int], decision: Any) -> Any:
        if decision is None:
            return None
        wire = HandshakeWire(decision, client_id, address, self.host.handshakes)

        async def act() -> None:
            await wire.run()
            self.recorder.record_handshake(decision, *address, wire.outcome, wire.arrival)

        return act()

    def tls_start_client(self, tls_start: Any) -> None:
        if self.host.handshakes.pending:
            tlsconfig = self.host.master.addons.get("tlsconfig")
            self.host.handshakes.start_client(tls_start, getattr(tlsconfig, "certstore", None))

    def tls_failed_client(self, tls_start: Any) -> None:
        self.host.handshakes.failed_client(tls_start)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Let a large request body stream upstream when no rule needs it to decide."""
        if self.arrivals.waiting:
            self.arrivals.note(flow)
        if flow.response or flow.error or not flow.live or not is_large(flow.request, True):
            return
        if not self.gate.is_open or self.asked.asks(flow):
            return  # decided in the request hook (once the proxy is open; as it asks)
        decided, decision = self.decider.decide_early(self._view(flow))
        if not decided:
            return  # a rule matches on the body: it is read whole before deciding
        self._early[flow.id] = decision
        if decision is None:
            flow.request.stream = True

    def request(self, flow: http.HTTPFlow) -> Any:
        return self.upstream.sent(flow, self._request(flow))

    def _request(self, flow: http.HTTPFlow) -> Any:
        if not self.gate.is_open:
            return _then(self.gate.wait(), lambda _: self._request(flow))
        early = self._early.pop(flow.id, _UNDECIDED)
        if flow.response or flow.error or not flow.live:
            return None
        frame_h2_body(flow.request)
        if early is not _UNDECIDED:
            return self._inject(flow, early)
        asked = self.asked.decide(flow)  # X-Chaos-Fault (request_faults): before the rules
        if asked is not None:
            return self._inject(flow, asked)
        decision = self.decider.decide(self._view(flow), flow.request)
        if decision is None or isinstance(decision, Decision):
            return self._inject(flow, decision)
        return _then(decision, lambda decided: self._inject(flow, decided))

    def _inject(self, flow: http.HTTPFlow, decision: Decision | None) -> Any:
        """Apply ``decision`` (None: untouched) to the flow; its request-stage faults are
        returned as a coroutine for mitmproxy to await."""
        if decision is None:
            return None
        wire = FlowWire(self.host, flow, decision)
        self._wires[flow.id] = wire
        self.recorder.tag(flow, decision)
        if wire.has(Stage.CONNECT):  # before its upstream connection: refused, delayed
            return wire.run(Stage.CONNECT)
        return wire.run(Stage.REQUEST) if wire.has(Stage.REQUEST) else None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Stream a throttled answer (its relay paces the body), and a large one when no
        fault acts on it."""
        self.upstream.answering(flow)
        wire = self._wires.get(flow.id)
        response = flow.response
        if response is None or flow.error or not flow.live:
            return
        paced = wire is not None and wire.streaming()
        if not paced and not is_large(response, False):
            return
        if wire is not None:
            if wire.has(Stage.RESPONSE):
                return
            self._annotate(flow, wire)  # the response hook comes after the body
        if not response.stream:
            response.stream = True

    def response(self, flow: http.HTTPFlow) -> Any:
        timed_out = self.upstream.answered(flow)
        wire = self._wires.get(flow.id)
        if wire is None:
            self._record(flow, None)
            return None
        if flow.response is not None and not wire.answered_early and not timed_out:
            wire.upstream_status = flow.response.status_code
        self._annotate(flow, wire)
        if wire.has(Stage.RESPONSE):
            return self._finish(flow, wire)
        self._wires.pop(flow.id, None)
        if not self.sockets.adopt(flow, wire):  # an adopted socket is recorded when it ends
            self._record(flow, wire)
        return None

    async def _finish(self, flow: http.HTTPFlow, wire: FlowWire) -> None:
        try:
            await wire.run(Stage.RESPONSE)
            self._annotate(flow, wire)  # also on a new answer
        finally:
            self._wires.pop(flow.id, None)
            # recorded here even when a fault killed the flow: mitmproxy runs no error hook
            # for a flow killed in the response hook
            if not self.sockets.adopt(flow, wire):
                self._record(flow, wire)

    def _annotate(self, flow: http.HTTPFlow, wire: FlowWire) -> None:
        if self.engine.scenario.annotate and flow.response is not None:
            flow.response.headers[ANNOTATION_HEADER] = wire.rule

    def error(self, flow: http.HTTPFlow) -> None:
        self.upstream.failed(flow)
        early = self._early.pop(flow.id, _UNDECIDED)
        wire = self._wires.pop(flow.id, None)
        if wire is not None:
            wire.forget_route()
        # decided (and counted) from its head, then the client left mid-upload: recorded too
        counted = wire is None and early is not _UNDECIDED
        self._record(flow, wire, counted=counted, decision=early if counted else None)

    def _record(self, flow: http.HTTPFlow, wire: FlowWire | None, **early: Any) -> None:
        self.recorder.record(flow, wire, self.arrivals.pop(flow), self.engine.phase, **early)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self.sockets.started(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        self.sockets.message(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.sockets.ended(flow)

    def client_disconnected(self, client: Any) -> None:
        self.host.client_left(client.id)
        self._tunneled.discard(client.id)

    def server_connected(self, data: Any) -> None:
        self.deadlines.connected(data.server)

    def server_disconnected(self, data: Any) -> None:
        self.deadlines.disconnected(data.server)

    def done(self) -> None:
        self.gate.open()
        self.timeline.stop()
        self.state.stop()
        self.control.stop()
        self.watch.stop()
        self.upstream.close()
        self.sockets.close()
        self.recorder.close()
        self.host.close()
        for line in summary_lines(self.engine) if self.summary_at_exit else ():
            logger.info("%s", line)

    def _view(self, flow: http.HTTPFlow, point: str | None = None) -> FlowRequest:
        spec = flow.client_conn.proxy_mode.full_spec if self.upstream_names else ""
        if point is None:  # a request: in a CONNECT tunnel, or making its own connection
            tunneled = self._tunneled and flow.client_conn.id in self._tunneled
            point = "tunneled" if tunneled else "request"
        return FlowRequest(flow, self.upstream_names.get(spec), point)  # upstream: NAME or None

    # ------------------------------------------------------------------ for runners and control

    def use_state(self, spec: str | None) -> None:
        """Keep the scenario's state where ``spec`` says (``--state``: None or ``memory``,
        or ``redis://HOST:PORT/DB``); before the proxy runs. Raises StateError."""
        self.state = open_state(
            spec,
            self.engine,
            on_reset=self.decisions.clear,
            reschedule=self.reschedule,
            on_apply=lambda: self.on_apply() if self.on_apply is not None else None,
        )
        self.decider = StateDecider(self.state)

    def hold(self) -> None:
        self.gate.hold()  # requests wait until open(): serve() holds them during startup

    def open(self) -> None:
        self.gate.open()

    def when_ready(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (on the proxy's loop) once the listeners are bound."""
        self._ready_callbacks.append(callback)

    patches = property(lambda self: _internals.in_force())  # ControlTarget: in /healthz
    serving = property(lambda self: self.ready.is_set())  # ControlTarget
    admin_url = property(lambda self: self.control.url)  # once it serves (None without one)
    #: why a required control API could not start (None: it did, or none was asked)
    control_error = property(lambda self: self.control.error)
    held = property(lambda self: self.host.waits.count + self.held_elsewhere)  # in a fault
    in_flight = property(lambda self: len(self._wires))  # rule fired, flow not finished yet

    def release_all(self) -> None:
        """End every wait: the proxy is stopping, so held flows are let go (and closed)."""
        self.host.waits.release_all()

    def reset(self) -> None:
        """``POST /reset``: counters, rate windows and the phase clock back to zero, and the
        decision ring emptied (metrics counters keep growing, as Prometheus expects)."""
        self.engine.reset()
        self.decisions.clear()
        logger.info("counters reset")
        self.reschedule()

    def apply(self, scenario: Scenario, source: str | None = None, seed: int | None = None) -> None:
        """Make ``scenario`` the active one (thread-safe); ``seed`` is the apply's own."""
        self.engine.apply(scenario, source, seed)
        if self.on_apply is not None:
            self.on_apply()
        rules = sum(1 for _ in scenario.all_rules())
        logger.info(
            "scenario %s applied (seed %d, %d rules)", scenario.label, self.engine.seed, rules
        )
        self.reschedule()

    def reschedule(self) -> None:
        """Re-arm the timer for the next phase boundary or ttl expiry (thread-safe)."""
        self.timeline.reschedule()


async def _then(first: Awaitable[Any], then: Callable[[Any], Any]) -> None:
    """Await ``first``, call ``then`` with its result, and await what that returns (if any)."""
    work = then(await first)
    if work is not None:
        await work


addons = [ChaosAddon()]
