"""What the control API needs from a running proxy: the :class:`ControlTarget` protocol.

The mitmproxy addon implements it; control never imports the addon.
"""

from __future__ import annotations

from typing import Protocol

from chaosproxy.core.decisions import DecisionLog
from chaosproxy.core.engine import Engine
from chaosproxy.core.metrics import Metrics
from chaosproxy.core.scenario import Scenario


class ControlTarget(Protocol):
    """A proxy the control API steers and observes."""

    @property
    def engine(self) -> Engine:
        """The engine that decides (scenario, phase, seed, counters)."""
        ...

    @property
    def decisions(self) -> DecisionLog:
        """Recent requests, newest last."""
        ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def serving(self) -> bool:
        """The listeners are bound (``/healthz`` answers 200)."""
        ...

    @property
    def patches(self) -> list[str]:
        """The mitmproxy patches in force (the seam's active list; ``/healthz`` shows it)."""
        ...

    @property
    def held(self) -> int:
        """Flows currently waiting in a fault."""
        ...

    def apply(self, scenario: Scenario, source: str | None = None, seed: int | None = None) -> None:
        """Make ``scenario`` the active one (``seed``: given with this apply, it wins)."""
        ...

    def reset(self) -> None:
        """Counters, rate windows and the phase clock back to zero; decisions emptied."""
        ...

    def reschedule(self) -> None:
        """The phase clock moved (a jump): re-arm the timeline."""
        ...
