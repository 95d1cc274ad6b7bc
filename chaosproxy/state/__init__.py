"""Where a scenario's state lives: counters, rate windows, the phase clock, the seed.

One interface, :class:`~chaosproxy.state.base.ScenarioState`, two homes: this process
(:class:`~chaosproxy.state.memory.MemoryState`, the default: the engine's own counters)
and a Redis server that several replicas share (:mod:`chaosproxy.state.shared`,
``--state redis://HOST:PORT/DB``). Imports no mitmproxy; redis-py is imported only when
shared state is asked for.
"""

from __future__ import annotations

from chaosproxy.state.base import (
    STATE_ENV,
    ScenarioState,
    StateError,
    StateUnavailable,
    parse_url,
)
from chaosproxy.state.factory import open_state
from chaosproxy.state.memory import MemoryState

__all__ = [
    "STATE_ENV",
    "MemoryState",
    "ScenarioState",
    "StateError",
    "StateUnavailable",
    "open_state",
    "parse_url",
]
