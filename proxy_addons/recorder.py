"""The decision recorder: what the addon tells about each request it saw.

A request a rule fired for is tagged in the flow (``flow.metadata["chaos"]``, a mark and a
comment mitmweb shows) and logged; every finished request becomes a
:class:`~chaosproxy.core.decisions.DecisionRecord` in the decision log, which feeds the
metrics and any JSON-lines files (``--decision-log``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from mitmproxy import http

from chaosproxy.core.decisions import (
    IDEMPOTENCY_HEADER,
    DecisionLog,
    DecisionRecord,
    JsonLinesWriter,
    parse_retry_after,
    request_key,
)
from chaosproxy.core.engine import Decision, Engine
from chaosproxy.core.metrics import Metrics
from chaosproxy.core.units import counted
from chaosproxy.proxy_addons.upstream import TIMED_OUT_KEY
from chaosproxy.proxy_addons.wire import FlowRequest

if TYPE_CHECKING:
    from chaosproxy.proxy_addons.wire import FlowWire

logger = logging.getLogger("chaosproxy")

METADATA_KEY = "chaos"


class DecisionRecorder:
    """Tags flows a rule fired for and records every finished request."""

    def __init__(self) -> None:
        #: every request seen, newest last
        self.log = DecisionLog()
        self.metrics = Metrics()
        self.log.subscribe(self.metrics)
        self._writers: list[JsonLinesWriter] = []

    def log_to(self, path: str) -> JsonLinesWriter:
        """Append each decision record to ``path`` as a JSON line (raises OSError)."""
        writer = JsonLinesWriter(path)
        self._writers.append(writer)
        self.log.subscribe(writer)
        return writer

    def close(self) -> None:
        for writer in self._writers:
            writer.close()

    def tag(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """Mark the flow with the rule that fired (metadata, mark, comment) and log it."""
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
        _log_injected(decision, fault, method, url, f"{method} {url}")

    def record(
        self,
        flow: http.HTTPFlow,
        wire: FlowWire | None,
        arrived: float,
        phase: str | None,
        *,
        counted: bool = False,
        decision: Decision | None = None,
        websocket: dict[str, Any] | None = None,
    ) -> None:
        """Add the finished request to the decision log. One that never reached the request
        hook is not recorded unless ``counted`` (decided from its head, with ``decision``,
        then the client left mid-body): what the engine counted is recorded too.
        ``phase``: the engine's, for a request no rule fired for. ``websocket``: what a
        ws_* rule's faults did to the socket's messages (recorded when it ends)."""
        request = flow.request
        if request.method == "CONNECT":
            if wire is None:
                return  # a tunnel no connect-time rule fired for: its requests are recorded
        elif request.timestamp_end is None and not counted:
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
            elif _client_left(error, request):
                outcome = "client_disconnected"
            else:  # e.g. the upstream refused: mitmproxy answers 502 with the reason
                outcome, status = "error", 502
        elif flow.response is not None:
            outcome, status = "response", flow.response.status_code
        else:
            outcome = "closed"
        gave_up = flow.metadata.get(TIMED_OUT_KEY)
        unreachable = wire.route.unreachable if wire is not None and wire.route else None
        if gave_up is not None:  # the proxy answered 504: the upstream never did
            upstream_status, error = None, f"upstream {gave_up}"
        elif unreachable is not None and outcome == "response":
            # the relay's 502: recorded as mitmproxy's own 502 for an unreachable upstream
            outcome, upstream_status, error = "error", None, unreachable
        elif wire is None:
            upstream_status = status if outcome == "response" else None
        else:
            upstream_status = wire.upstream_status
        body = request.raw_content or b""
        if wire is not None:
            decision = wire.decision
        if decision is not None:  # mitmweb shows what the client got, next to the rule
            got = outcome if status is None else f"{outcome} {status}"
            flow.comment = f"{flow.comment} -> client got: {got}"
            chaos = flow.metadata.get(METADATA_KEY)
            if isinstance(chaos, dict):
                chaos["outcome"], chaos["status"] = outcome, status
        method, url = request.method, request.pretty_url  # each costs header look-ups: once
        self.log.add(
            DecisionRecord(
                seq=self.log.next_seq(),
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
                phase=decision.phase if decision is not None else phase,
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
                stream=wire.stream_report() if wire is not None else None,
                grpc_status=_grpc_status(flow.response) if outcome == "response" else None,
                websocket=websocket,
            )
        )

    def record_handshake(
        self, decision: Decision, host: str, port: int, outcome: str | None, arrived: float
    ) -> None:
        """A decision made as a reverse-mode client started its TLS handshake (no flow)."""
        fault = decision.rule.describe()
        url = f"https://{host}:{port}"
        _log_injected(decision, fault, "TLS", url, f"the TLS handshake for {url}")
        now_wall, now_mono = time.time(), time.monotonic()
        self.log.add(
            DecisionRecord(
                seq=self.log.next_seq(),
                time=arrived,
                monotonic=now_mono - (now_wall - arrived),
                duration=max(0.0, now_wall - arrived),
                method="TLS",
                url=url,
                host=host,
                path="",
                request_key=request_key("TLS", url, b""),
                rule=decision.name,
                faults=tuple(f.type for f in decision.faults),
                fault=fault,
                phase=decision.phase,
                outcome=outcome or "closed",
                status=None,
                upstream_status=None,
            )
        )


def _log_injected(decision: Decision, fault: str, method: str, url: str, into: str) -> None:
    """Log that ``decision`` injected ``fault`` (``--log-format json``: with its fields)."""
    logger.info(
        "injected %s [%s] into %s",
        decision.name,
        fault,
        into,
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


def _grpc_status(response: http.Response | None) -> int | None:
    """``grpc-status`` of a gRPC answer: in its headers (trailers-only) or its trailers."""
    if response is None:
        return None
    value = response.headers.get("grpc-status")
    if value is None and response.trailers is not None:
        value = response.trailers.get("grpc-status")
    return int(value) if value is not None and value.isdigit() else None


def _client_left(error: str, request: http.Request) -> bool:
    """The error says the client went away (mitmproxy words it in several ways; an
    incomplete request body can only be the client's doing)."""
    if error.lower().startswith("client disconnected"):
        return True
    return request.timestamp_end is None and "peer closed connection" in error


def summary_lines(engine: Engine) -> list[str]:
    """What was injected, per rule, and which rules never matched (likely typos)."""
    stats = engine.stats()
    lines = [
        f"summary: {counted(stats['injected'], 'fault')} injected into "
        f"{counted(stats['requests'], 'request')} "
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
