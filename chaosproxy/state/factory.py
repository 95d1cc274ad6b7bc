"""Choosing a scenario state from ``--state`` (``memory`` or ``redis://...``)."""

from __future__ import annotations

from collections.abc import Callable

from chaosproxy.core.engine import Engine
from chaosproxy.state.base import ScenarioState, parse_url
from chaosproxy.state.memory import MemoryState


def open_state(
    text: str | None,
    engine: Engine,
    *,
    on_reset: Callable[[], object] | None = None,
    reschedule: Callable[[], object] | None = None,
    on_apply: Callable[[], object] | None = None,
) -> ScenarioState:
    """The state ``text`` names (None or ``memory``: this process) for ``engine``;
    ``on_reset``, ``reschedule`` and ``on_apply`` are called when another replica resets
    the counters, moves the phase clock or applies a scenario."""
    url = parse_url(text or "")
    if url is None:
        return MemoryState(engine)
    from chaosproxy.state.shared import RedisState

    return RedisState(url, engine, on_reset=on_reset, reschedule=reschedule, on_apply=on_apply)
