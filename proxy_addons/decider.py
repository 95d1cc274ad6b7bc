"""Who decides what happens to a request: the ``Decider`` interface the addon asks.

One process decides with its own engine (:class:`EngineDecider`); a ``--workers`` worker
asks its coordinator's engine (``workers.CoordinatorDecider``). The addon is the same in
both: it asks its decider and applies the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from mitmproxy import http

from chaosproxy.core.engine import Decision, Engine, RequestView

#: What ``Decider.decide`` returns: the decision now (None: untouched), or later.
Verdict = Decision | None | Awaitable[Decision | None]


class Decider(Protocol):
    """Decides per request; ``decide_early`` from the head alone, when it can."""

    def decide_early(self, view: RequestView) -> tuple[bool, Decision | None]:
        """(True, decision) when the head is enough to decide; (False, None) when a rule
        needs the body (the request is then read whole and :meth:`decide` asked)."""
        ...

    def decide(self, view: RequestView, request: http.Request) -> Verdict:
        """The decision for a whole request: a Decision, None, or an awaitable of either."""
        ...


class EngineDecider:
    """Decisions from an engine in this process (``chaosproxy run``, the Python API)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def decide_early(self, view: RequestView) -> tuple[bool, Decision | None]:
        return self.engine.decide_without_body(view)

    def decide(self, view: RequestView, request: http.Request) -> Decision | None:
        return self.engine.decide(view)
