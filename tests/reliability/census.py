"""What a running in-process proxy holds: tasks, timers, flows, connections, file descriptors."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from chaosproxy.testing.api import ChaosProxy


def on_loop(proxy: ChaosProxy, fn: Any, timeout: float = 5.0) -> Any:
    """Run ``fn()`` on the proxy's event loop and return its result."""

    async def call() -> Any:
        return fn()

    assert proxy._loop is not None
    return asyncio.run_coroutine_threadsafe(call(), proxy._loop).result(timeout)


def census(proxy: ChaosProxy) -> dict[str, int]:
    """Counts that must fall back to their idle values once every client has gone."""

    def count() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        addon = proxy.addon
        ps = proxy._master.addons.get("proxyserver")
        timers = getattr(loop, "_scheduled", [])  # CPython's heap of TimerHandles
        return {
            "tasks": sum(1 for t in asyncio.all_tasks(loop) if t is not me),
            "timers": sum(1 for h in timers if not h.cancelled()),
            "connections": len(ps.connections),
            "held": addon.held,
            "in_flight": addon.in_flight,
            "early": len(addon._early),
            "waiters": addon.host.waits.count,
            "relay": addon.relay.active,
        }

    counts = on_loop(proxy, count)
    counts["fds"] = len(os.listdir("/proc/self/fd"))
    return counts


def settled(proxy: ChaosProxy, baseline: dict[str, int]) -> dict[str, int] | None:
    """The census when nothing exceeds ``baseline`` (None until then), for wait_until."""
    now = census(proxy)
    return now if all(now[k] <= baseline[k] for k in baseline) else None
