"""A listen backlog wide enough for bursts of new clients.

asyncio's default backlog (100) drops SYNs when more clients connect at once, and each
dropped client waits a second for its retry. Once a master's listeners are bound, their
TCP sockets listen again with :data:`LISTEN_BACKLOG`. Uses mitmproxy internals (the
``proxyserver`` addon's ``servers``, each ``ServerInstance._servers``, the asyncio servers);
without them the proxy works with asyncio's default.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from chaosproxy.proxy_addons._internals import (
    Patch,
    missing_attributes,
    missing_instance_attributes,
)

logger = logging.getLogger("chaosproxy")

#: Listen backlog for the proxy's sockets.
LISTEN_BACKLOG = 4096


def check() -> str | None:
    from mitmproxy.addons import proxyserver
    from mitmproxy.proxy import mode_servers

    return (
        missing_instance_attributes(proxyserver.Proxyserver, "servers")
        or missing_attributes(mode_servers, "AsyncioServerInstance")
        or missing_instance_attributes(mode_servers.AsyncioServerInstance, "_servers")
    )


def widen(ps: Any, backlog: int = LISTEN_BACKLOG) -> int:
    """Raise the listen backlog of the proxy's TCP sockets; returns how many were widened."""
    widened = 0
    for instance in ps.servers:
        for server in getattr(instance, "_servers", ()):
            for tsock in getattr(server, "sockets", ()) or ():
                try:
                    if tsock.type != socket.SOCK_STREAM:
                        continue
                    dup = socket.socket(fileno=os.dup(tsock.fileno()))
                    try:
                        dup.listen(backlog)
                    finally:
                        dup.close()
                    widened += 1
                except OSError as exc:  # pragma: no cover - best effort
                    logger.debug("cannot widen the listen backlog: %s", exc)
    return widened


def apply(master: Any) -> None:
    if master is None:
        raise ValueError("listen_backlog applies to a master")
    widen(master.addons.get("proxyserver"))


PATCH = Patch(
    name="listen_backlog",
    target="mitmproxy's proxyserver.servers[*]._servers (the asyncio servers' sockets)",
    check=check,
    apply=apply,
    fallback=f"asyncio's default listen backlog (100, not {LISTEN_BACKLOG})",
    per_master=True,
)
