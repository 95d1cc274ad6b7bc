"""Prometheus metrics for ``GET /metrics``, counted from the decision log.

Counters follow Prometheus semantics: they only grow while the proxy runs (a scenario
change or ``POST /reset`` zeroes the stats, not these). Gauges describe the present:
scenario, phase, paused, flows held.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from chaosproxy.core.decisions import DecisionRecord
from chaosproxy.core.grpc_protocol import STATUS_NAMES

#: Buckets of the added-latency histogram, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Mapping[str, Any]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Metrics:
    """Counts what the decision log reports; a listener of :class:`DecisionLog`.

    Called on the proxy's event loop, as is :meth:`render` (the control API runs there).
    """

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.requests = 0
        self.outcomes: Counter[str] = Counter()
        self.client_status: Counter[int] = Counter()
        self.upstream_status: Counter[int] = Counter()
        self.grpc_status: Counter[int] = Counter()
        self.faults: Counter[tuple[str, str]] = Counter()
        self.latency_counts = [0] * (len(self.buckets) + 1)  # the last is +Inf
        self.latency_sum = 0.0
        #: (rule, direction, action) -> WebSocket messages (see DecisionRecord.websocket)
        self.ws_messages: Counter[tuple[str, str, str]] = Counter()
        #: (rule, code) -> WebSockets a fault closed
        self.ws_closes: Counter[tuple[str, int]] = Counter()
        #: reason -> X-Chaos-Fault headers ignored (request_faults): invalid, not_allowed
        self.asks_ignored: Counter[str] = Counter()

    def __call__(self, record: DecisionRecord) -> None:
        self.requests += 1
        self.outcomes[record.outcome] += 1
        if record.status is not None:
            self.client_status[record.status] += 1
        if record.upstream_status is not None:
            self.upstream_status[record.upstream_status] += 1
        if record.grpc_status is not None:
            self.grpc_status[record.grpc_status] += 1
        if record.rule is not None:
            for fault_type in record.faults:
                self.faults[(record.rule, fault_type)] += 1
        if record.added_latency > 0:
            self.latency_counts[bisect.bisect_left(self.buckets, record.added_latency)] += 1
            self.latency_sum += record.added_latency
        if record.websocket is not None and record.rule is not None:
            self._count_websocket(record.rule, record.websocket)

    def _count_websocket(self, rule: str, socket: Mapping[str, Any]) -> None:
        for direction in ("client", "server"):
            for action, n in (socket.get(direction) or {}).items():
                if n:
                    self.ws_messages[(rule, direction, action)] += n
        if socket.get("closed_by") == "proxy" and socket.get("close_code") is not None:
            self.ws_closes[(rule, socket["close_code"])] += 1

    def render(self, state: Mapping[str, Any]) -> str:
        """The Prometheus text exposition; ``state`` is the engine's present (see
        :func:`chaosproxy.control.documents.metrics_state`): scenario, source, seed, phase,
        phases, paused, held."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, value: float, labels: Mapping[str, Any] | None = None) -> None:
            out.append(f"{name}{_labels(labels or {})} {_number(value)}")

        family("chaosproxy_requests_total", "counter", "Requests the proxy completed.")
        sample("chaosproxy_requests_total", self.requests)
        family(
            "chaosproxy_outcomes_total",
            "counter",
            "What clients got: response, reset, closed, client_disconnected, error.",
        )
        for outcome, n in sorted(self.outcomes.items()):
            sample("chaosproxy_outcomes_total", n, {"outcome": outcome})
        family("chaosproxy_faults_injected_total", "counter", "Faults injected, by rule and type.")
        for (rule, fault_type), n in sorted(self.faults.items()):
            sample("chaosproxy_faults_injected_total", n, {"rule": rule, "type": fault_type})
        family(
            "chaosproxy_upstream_responses_total",
            "counter",
            "Answers from the upstream, by status code.",
        )
        for status, n in sorted(self.upstream_status.items()):
            sample("chaosproxy_upstream_responses_total", n, {"code": status})
        family(
            "chaosproxy_responses_total",
            "counter",
            "Answers clients received (injected or not), by status code.",
        )
        for status, n in sorted(self.client_status.items()):
            sample("chaosproxy_responses_total", n, {"code": status})
        family(
            "chaosproxy_grpc_responses_total",
            "counter",
            "gRPC calls answered (injected or not), by the gRPC status their clients received.",
        )
        for code, n in sorted(self.grpc_status.items()):
            name = STATUS_NAMES.get(code, str(code))
            sample("chaosproxy_grpc_responses_total", n, {"code": name})
        family(
            "chaosproxy_added_latency_seconds",
            "histogram",
            "Time the proxy held a request or its answer on purpose (latency, timeout).",
        )
        cumulative = 0
        for bound, n in zip(self.buckets, self.latency_counts, strict=False):
            cumulative += n
            sample("chaosproxy_added_latency_seconds_bucket", cumulative, {"le": _number(bound)})
        cumulative += self.latency_counts[-1]
        sample("chaosproxy_added_latency_seconds_bucket", cumulative, {"le": "+Inf"})
        sample("chaosproxy_added_latency_seconds_sum", self.latency_sum)
        sample("chaosproxy_added_latency_seconds_count", cumulative)

        family(
            "chaosproxy_websocket_messages_total",
            "counter",
            "Messages of WebSockets a ws_* rule fired for (counted when the socket ends), by "
            "rule, direction (client: sent by the client) and action (seen, dropped, delayed, "
            "corrupted).",
        )
        for (rule, direction, action), n in sorted(self.ws_messages.items()):
            labels = {"rule": rule, "direction": direction, "action": action}
            sample("chaosproxy_websocket_messages_total", n, labels)
        family(
            "chaosproxy_websocket_closes_total",
            "counter",
            "WebSockets a ws_close fault closed, by rule and close code.",
        )
        for (rule, code), n in sorted(self.ws_closes.items()):
            sample("chaosproxy_websocket_closes_total", n, {"rule": rule, "code": code})
        family(
            "chaosproxy_request_faults_ignored_total",
            "counter",
            "X-Chaos-Fault headers ignored (request_faults): invalid, or not_allowed (a client "
            "beyond loopback without the admin token).",
        )
        for reason, n in sorted(self.asks_ignored.items()):
            sample("chaosproxy_request_faults_ignored_total", n, {"reason": reason})

        family("chaosproxy_scenario_info", "gauge", "The active scenario (value always 1).")
        sample(
            "chaosproxy_scenario_info",
            1,
            {
                "scenario": state["scenario"],
                "source": state.get("source") or "",
                "seed": state["seed"],
                "seed_source": state.get("seed_source") or "",
            },
        )
        family("chaosproxy_phase", "gauge", "1 for the active phase of the scenario, else 0.")
        for phase in state.get("phases") or ():
            sample(
                "chaosproxy_phase",
                1 if phase == state.get("phase") else 0,
                {"scenario": state["scenario"], "phase": phase},
            )
        family("chaosproxy_paused", "gauge", "1 while injection is paused.")
        sample("chaosproxy_paused", 1 if state.get("paused") else 0)
        family("chaosproxy_held_flows", "gauge", "Requests a fault is holding right now.")
        sample("chaosproxy_held_flows", state.get("held", 0))
        return "\n".join(out) + "\n"
