"""Who decides what happens to a request: the ``Decider`` interface the addon asks.

One process decides against its scenario state (:class:`StateDecider`: the engine's own
counters, or counters shared with other replicas in Redis); a ``--workers`` worker asks
its coordinator (``workers.CoordinatorDecider``). The addon is the same in all: it asks
its decider and applies the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from mitmproxy import http

from chaosproxy.core.engine import Decision, Engine, RequestView
from chaosproxy.state import MemoryState, ScenarioState

#: What ``Decider.decide`` returns: the decision now (None: untouched), or later.
Verdict = Decision | None | Awaitable[Decision | None]


class Decider(Protocol):
    """Decides per request; ``decide_early`` from the head alone, when it can."""

    def decide_early(self, view: RequestView) -> tuple[bool, Decision | None]:
        """(True, decision) when the head is enough to decide; (False, None) when a rule
        needs the body (the request is then read whole and :meth:`decide` asked)."""
        ...

    def decide(self, view: RequestView, request: http.Request | None) -> Verdict:
        """The decision for a whole request: a Decision, None, or an awaitable of either."""
        ...


class StateDecider:
    """Decisions against a :class:`~chaosproxy.state.ScenarioState` (``chaosproxy run``,
    the Python API): in memory, or shared through Redis (``--state``)."""

    def __init__(self, state: ScenarioState) -> None:
        self.state = state

    def decide_early(self, view: RequestView) -> tuple[bool, Decision | None]:
        return self.state.decide_early(view)

    def decide(self, view: RequestView, request: http.Request | None) -> Verdict:
        return self.state.decide(view)


class EngineDecider(StateDecider):
    """Decisions from an engine's own counters in this process."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(MemoryState(engine))
        self.engine = engine
