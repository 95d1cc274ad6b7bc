"""Listening sockets that share their port with the other ``--workers`` (SO_REUSEPORT).

mitmproxy listens with ``asyncio.start_server`` (its ``AsyncioServerInstance.listen``); in a
worker process the only servers are mitmproxy's, so each gets ``reuse_port=True`` and the
kernel spreads new connections over the workers. Applied in worker processes only.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from chaosproxy.proxy_addons._internals import Patch


def check() -> str | None:
    from mitmproxy.proxy import mode_servers

    if not hasattr(socket, "SO_REUSEPORT"):
        return "SO_REUSEPORT is not available on this platform"
    listen = getattr(getattr(mode_servers, "AsyncioServerInstance", None), "listen", None)
    code = getattr(listen, "__code__", None)
    if code is None or "start_server" not in code.co_names:
        return "AsyncioServerInstance.listen no longer calls asyncio.start_server"
    if mode_servers.asyncio is not asyncio:
        return "mitmproxy.proxy.mode_servers.asyncio is not the asyncio module"
    return None


def apply(_: Any = None) -> None:
    original = asyncio.start_server
    if getattr(original, "_chaosproxy", False):
        return

    async def start_server(*args: Any, **kwargs: Any) -> asyncio.Server:
        kwargs.setdefault("reuse_port", True)
        return await original(*args, **kwargs)

    start_server._chaosproxy = True  # type: ignore[attr-defined]
    asyncio.start_server = start_server


PATCH = Patch(
    name="reuse_port",
    target="asyncio.start_server as mitmproxy's AsyncioServerInstance.listen calls it",
    check=check,
    apply=apply,
    fallback="a worker cannot listen on the shared port (workers need SO_REUSEPORT)",
)
