"""The control API's routes: one handler per endpoint, over a :class:`ControlTarget`.

The endpoints and JSON shapes are DESIGN.md's (users read them in docs/control-api.md).
Handlers are plain functions of a :class:`Request` to a :class:`Reply`; the server
(:mod:`.server`) reads requests and writes replies.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chaosproxy.control import offload
from chaosproxy.control.documents import (
    BODY_SOURCE,
    explain_document,
    explain_request,
    load_body,
    metrics_state,
    scenario_state,
    shipped_list,
)
from chaosproxy.control.target import ControlTarget
from chaosproxy.core import yamlsource
from chaosproxy.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from chaosproxy.core.scenario import Scenario, ScenarioError
from chaosproxy.state import ScenarioState, StateUnavailable

logger = logging.getLogger("chaosproxy")


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


Handler = Callable[[Request], Reply | Awaitable[Reply]]


class Routes:
    """The control API's endpoints for one proxy (``target``)."""

    def __init__(self, target: ControlTarget) -> None:
        self.target = target
        self._applying = asyncio.Lock()  # PUTs apply one at a time, in arrival order
        self.table: dict[str, dict[str, Handler]] = {
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

    async def dispatch(self, request: Request) -> Reply:
        methods = self.table.get(request.path)
        if methods is None:
            return Reply.error(404, f"no endpoint {request.path}", endpoints=sorted(self.table))
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return Reply.json(
                405,
                {"error": f"{request.method} is not allowed on {request.path}; use {allowed}"},
                allow=allowed,
            )
        try:
            reply = handler(request)
            return await reply if inspect.isawaitable(reply) else reply
        except Exception as exc:  # a bug must not take the proxy (or the connection) down
            logger.exception("control API %s %s failed", request.method, request.path)
            return Reply.error(500, f"internal error: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ endpoints

    def healthz(self, request: Request) -> Reply:
        if not self.target.serving:
            return Reply.json(503, {"status": "starting"})
        doc: dict[str, Any] = {
            "status": "ok",
            "scenario": self.target.engine.scenario.label,
            "patches": self.target.patches,  # mitmproxy's internals patched (the seam)
        }
        state = _state(self.target)
        if state is not None:
            # still 200 while shared state is away: the proxy serves, deciding locally
            doc["state"] = state.health()
            if doc["state"]["status"] != "ok":
                doc["status"] = "degraded"
        return Reply.json(200, doc)

    async def get_scenario(self, request: Request) -> Reply:
        # in a thread: the document of a scenario with 1000 rules takes ~0.1 s to build
        return await asyncio.to_thread(self._scenario_reply)

    def _scenario_reply(self) -> Reply:
        return Reply.json(200, scenario_state(self.target))

    def _apply(self, scenario: Scenario, source: str, seed: int | None) -> Reply:
        # seed: given with this apply ({"name": N, "seed": S}), it wins over the run's --seed;
        # a whole scenario's own seed: is in scenario.seed and ranks below the run's
        self.target.apply(scenario, source=source, seed=seed)
        return self._scenario_reply()

    def get_scenarios(self, request: Request) -> Reply:
        return Reply.json(200, shipped_list(self.target.engine.scenario.label))

    async def put_scenario(self, request: Request) -> Reply:
        """Parse and validate off the loop (:mod:`.offload`), then apply in a thread (the
        engine compiles the rules outside its lock): requests keep flowing meanwhile."""
        text = _text(request)
        if text is None or not text.strip():
            return Reply.error(
                400,
                'give the scenario as the body (YAML or JSON), or {"name": NAME}',
                problems=[f"{BODY_SOURCE}: scenario: empty body"],
            )
        async with self._applying:
            return await self._put(text, len(request.body))

    async def _put(self, text: str, size: int) -> Reply:
        try:
            scenario, source, seed = await offload.run(load_body, text, size=size)
        except ScenarioError as exc:
            logger.warning(
                "PUT /scenario refused (keeping scenario %s):\n%s",
                self.target.engine.scenario.label,
                exc,
            )
            return Reply.error(
                400,
                f"invalid scenario; still running {self.target.engine.scenario.label}",
                problems=exc.lines,
            )
        return await asyncio.to_thread(self._apply, scenario, source, seed)

    async def post_phase(self, request: Request) -> Reply:
        text = _text(request) or ""
        try:
            data = await _parse(text)
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
            self.target.engine.jump_to(phase)
        except KeyError as exc:
            return Reply.error(400, str(exc.args[0]), phases=self.target.engine.phase_names)
        self.target.reschedule()
        return Reply.json(200, {"phase": phase, "phases": self.target.engine.phase_names})

    def post_pause(self, request: Request) -> Reply:
        self.target.engine.pause()
        logger.info("injection paused (control API): passing everything through")
        return Reply.json(200, {"paused": True})

    def post_resume(self, request: Request) -> Reply:
        self.target.engine.resume()
        logger.info("injection resumed (control API)")
        return Reply.json(200, {"paused": False})

    async def get_stats(self, request: Request) -> Reply:
        scope = request.query.get("scope", "replica")
        if scope not in ("replica", "cluster"):
            return Reply.error(400, f"scope must be replica or cluster, not {scope!r}")
        state = _state(self.target)
        if scope == "cluster" and state is not None:
            try:
                stats = await state.cluster_stats()
            except StateUnavailable as exc:
                return Reply.error(503, str(exc))
            stats["source"] = self.target.engine.source
            return Reply.json(200, stats)
        stats = self.target.engine.stats()
        stats["held"] = self.target.held
        stats["source"] = self.target.engine.source
        return Reply.json(200, stats)

    def post_reset(self, request: Request) -> Reply:
        self.target.reset()
        return Reply.json(200, self.target.engine.stats())

    def get_metrics(self, request: Request) -> Reply:
        text = self.target.metrics.render(metrics_state(self.target))
        state = _state(self.target)
        if state is not None:
            text += state.metrics_text()
        return Reply(200, text.encode(), content_type=METRICS_CONTENT_TYPE)

    async def post_explain(self, request: Request) -> Reply:
        text = _text(request) or ""
        try:
            data = await _parse(text)
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
        return Reply.json(200, explain_document(self.target.engine, req))

    def get_decisions(self, request: Request) -> Reply:
        try:
            since = int(request.query.get("since", "0"))
            limit = int(request.query["limit"]) if "limit" in request.query else None
        except ValueError:
            return Reply.error(400, "since and limit must be integers")
        records = self.target.decisions.records(since=since, limit=limit)
        return Reply.json(200, [r.to_dict() for r in records])


def _state(target: ControlTarget) -> ScenarioState | None:
    """The target's scenario state (``--state``), when it has one."""
    return getattr(target, "state", None)


async def _parse(text: str) -> Any:
    """A small body's data (None when blank), parsed off the loop (YAML parsing is slow)."""
    if not text.strip():
        return None
    return await offload.run(_data, text, size=len(text))


def _data(text: str) -> Any:
    return yamlsource.parse(text).data


def _text(request: Request) -> str | None:
    try:
        return request.body.decode("utf-8")
    except UnicodeDecodeError:
        return None
