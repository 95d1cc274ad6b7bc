"""The control API's routes over a fake ControlTarget: no proxy, no sockets."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from chaosproxy.control.routes import Reply, Request, Routes
from chaosproxy.core.decisions import DecisionLog
from chaosproxy.core.engine import Engine
from chaosproxy.core.metrics import Metrics
from chaosproxy.core.scenario import PASSTHROUGH, Scenario, load_text


class FakeTarget:
    """The narrowest thing the routes accept (the addon is one)."""

    def __init__(self) -> None:
        self.engine = Engine(PASSTHROUGH, seed=1)
        self.decisions = DecisionLog()
        self.metrics = Metrics()
        self.decisions.subscribe(self.metrics)
        self.ready = threading.Event()
        self.held = 0
        self.patches = ["ctx_per_thread"]
        self.applied: list[str | None] = []
        self.resets = 0
        self.rescheduled = 0

    @property
    def serving(self) -> bool:
        return self.ready.is_set()

    def apply(self, scenario: Scenario, source: str | None = None, seed: int | None = None) -> None:
        self.engine.apply(scenario, source, seed)
        self.applied.append(source)

    def reset(self) -> None:
        self.resets += 1

    def reschedule(self) -> None:
        self.rescheduled += 1


def call(routes: Routes, method: str, path: str, body: str = "", **query: str) -> tuple[int, Any]:
    reply: Reply = asyncio.run(
        routes.dispatch(Request(method, path, dict(query), {}, body.encode()))
    )
    text = reply.body.decode()
    return reply.status, json.loads(text) if reply.content_type == "application/json" else text


def test_healthz_says_starting_until_the_target_serves() -> None:
    target = FakeTarget()
    routes = Routes(target)
    assert call(routes, "GET", "/healthz") == (503, {"status": "starting"})
    target.ready.set()
    assert call(routes, "GET", "/healthz") == (
        200,
        {"status": "ok", "scenario": "passthrough", "patches": ["ctx_per_thread"]},
    )


def test_unknown_paths_and_methods_name_what_exists() -> None:
    routes = Routes(FakeTarget())
    status, body = call(routes, "GET", "/nope")
    assert status == 404 and "/scenario" in body["endpoints"]
    reply = asyncio.run(routes.dispatch(Request("DELETE", "/scenario", {}, {})))
    assert reply.status == 405 and reply.headers == {"allow": "GET, PUT"}


def test_put_scenario_applies_through_the_target_and_refuses_a_bad_one() -> None:
    target = FakeTarget()
    routes = Routes(target)
    status, body = call(routes, "PUT", "/scenario", "rules: [{fault: {type: error, status: 503}}]")
    assert status == 200 and target.applied == ["PUT /scenario"] and body["name"] == "api"
    status, body = call(routes, "PUT", "/scenario", "rules: [{fault: {type: error, status: 9}}]")
    assert status == 400 and body["problems"][0].startswith("body:1:")
    assert target.applied == ["PUT /scenario"]


def test_phase_jumps_reschedule_the_target() -> None:
    target = FakeTarget()
    target.apply(
        load_text(
            "phases: [{name: a, duration: 1m, rules: []}, {name: b, duration: 1m, rules: []}]",
            "p.yaml",
        )
    )
    routes = Routes(target)
    assert call(routes, "POST", "/scenario/phase", '{"phase": "b"}')[0] == 200
    assert target.engine.phase == "b" and target.rescheduled == 1
    status, body = call(routes, "POST", "/scenario/phase", '{"phase": "zz"}')
    assert status == 400 and body["phases"] == ["a", "b"]


def test_stats_and_reset_and_held() -> None:
    target = FakeTarget()
    target.held = 3
    routes = Routes(target)
    status, stats = call(routes, "GET", "/stats")
    assert status == 200 and stats["held"] == 3 and stats["requests"] == 0
    assert call(routes, "POST", "/reset")[0] == 200 and target.resets == 1


def test_a_failing_handler_is_a_500_not_a_crash() -> None:
    target = FakeTarget()
    routes = Routes(target)

    def broken(request: Request) -> Reply:
        raise RuntimeError("boom")

    routes.table["/stats"]["GET"] = broken
    status, body = call(routes, "GET", "/stats")
    assert status == 500 and body["error"] == "internal error: RuntimeError: boom"


class DegradedState:
    """A shared state whose store does not answer (what the routes ask of it)."""

    def __init__(self) -> None:
        self.fallbacks = 3

    def health(self) -> dict[str, Any]:
        return {"backend": "redis", "status": "degraded", "fallbacks": self.fallbacks}

    async def cluster_stats(self) -> dict[str, Any]:
        from chaosproxy.state import StateUnavailable

        raise StateUnavailable("shared state redis://127.0.0.1:6379/0 is unreachable")

    def metrics_text(self) -> str:
        return f"chaosproxy_state_fallbacks_total {self.fallbacks}\n"


def test_health_stats_and_metrics_say_where_the_state_is() -> None:
    from chaosproxy.state import MemoryState

    target = FakeTarget()
    target.ready.set()
    target.state = MemoryState(target.engine)  # type: ignore[attr-defined]
    routes = Routes(target)
    status, health = call(routes, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    assert health["state"] == {"backend": "memory", "status": "ok"}
    status, stats = call(routes, "GET", "/stats", scope="cluster")
    assert status == 200 and stats["scope"] == "cluster" and stats["replicas"] == 1
    assert call(routes, "GET", "/stats", scope="everything")[0] == 400
    target.state = DegradedState()  # type: ignore[attr-defined]
    status, health = call(routes, "GET", "/healthz")
    assert status == 200 and health["status"] == "degraded"  # still serving: still 200
    assert health["state"]["fallbacks"] == 3
    status, body = call(routes, "GET", "/stats", scope="cluster")
    assert status == 503 and "unreachable" in body["error"]
    status, local = call(routes, "GET", "/stats")
    assert status == 200 and "scope" not in local  # this replica's own counts
    assert "chaosproxy_state_fallbacks_total 3" in call(routes, "GET", "/metrics")[1]


def test_without_a_state_the_routes_answer_as_before() -> None:
    target = FakeTarget()
    target.ready.set()
    routes = Routes(target)
    assert "state" not in call(routes, "GET", "/healthz")[1]
    status, stats = call(routes, "GET", "/stats", scope="cluster")
    assert status == 200 and "scope" not in stats
