"""Stopping a master's listeners (releasing its ports) before it shuts down.

``master.shutdown()`` alone leaves the listening sockets open while the flows wind down;
the ``proxyserver`` addon's ``servers.update([])`` closes them at once, so a stopping proxy
stops accepting clients and frees its ports first. Internal API (the same on mitmproxy 11
and 12); without it the ports are released when the master shuts down.
"""

from __future__ import annotations

import inspect
from typing import Any

from chaosproxy.proxy_addons._internals import Patch, is_active, missing_instance_attributes


def check() -> str | None:
    from mitmproxy.addons import proxyserver

    problem = missing_instance_attributes(proxyserver.Proxyserver, "servers")
    if problem:
        return problem
    update = getattr(getattr(proxyserver, "Servers", None), "update", None)
    if update is None or not inspect.iscoroutinefunction(update):
        return "mitmproxy.addons.proxyserver.Servers.update is not a coroutine function"
    if list(inspect.signature(update).parameters) != ["self", "modes"]:
        return "Servers.update(self, modes) changed its signature"
    return None


async def stop_listening(master: Any) -> bool:
    """Close the master's listeners now; False when the patch is off (left to shutdown)."""
    ps = master.addons.get("proxyserver") if master is not None else None
    if ps is None or not is_active("stop_listeners"):
        return False
    await ps.servers.update([])
    return True


PATCH = Patch(
    name="stop_listeners",
    target="mitmproxy's proxyserver.servers.update([])",
    check=check,
    apply=lambda _: None,  # read only: stop_listening asks is_active
    fallback="a stopping proxy releases its ports only when its master shuts down",
)
