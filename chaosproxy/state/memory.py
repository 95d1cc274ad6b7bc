"""State in this process: the engine's own counters (the default)."""

from __future__ import annotations

from typing import Any

from chaosproxy.core.engine import Decision, Engine, RequestView


class MemoryState:
    """The :class:`~chaosproxy.state.base.ScenarioState` of one process: the engine
    decides with its own counters, windows and phase clock."""

    describe = "memory"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def decide_early(self, req: RequestView) -> tuple[bool, Decision | None]:
        return self.engine.decide_without_body(req)

    def decide(self, req: RequestView) -> Decision | None:
        return self.engine.decide(req)

    async def start(self) -> None:
        return None

    async def join(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"backend": "memory", "status": "ok"}

    async def cluster_stats(self) -> dict[str, Any]:
        """One process is the whole cluster."""
        stats = self.engine.stats()
        stats.update(scope="cluster", state="memory", replicas=1)
        return stats

    def metrics_text(self) -> str:
        return ""
