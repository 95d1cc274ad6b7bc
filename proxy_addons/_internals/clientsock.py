"""The client connections behind mitmproxy's flows: their handlers and sockets.

mitmproxy gives addons no way to a client's socket. Its ``proxyserver`` addon keeps each
client connection's handler in ``connections[client.id]``; the handler's
``transports[handler.client]`` holds the client's asyncio reader and writer. chaosproxy
needs them to reset a connection with a real TCP RST (``abort: reset``), to see when a
request's bytes arrived (:mod:`.receivetimes`) and to close clients when it stops. When
that shape is not there, :func:`connection_handler` returns None and each caller does what
stock mitmproxy can: a reset becomes a close, arrival is when mitmproxy read the request,
stopping leaves the clients to mitmproxy's shutdown.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import termios
from typing import Any

from chaosproxy.proxy_addons._internals import (
    Patch,
    is_active,
    missing_attributes,
    missing_instance_attributes,
)

logger = logging.getLogger("chaosproxy")


def check() -> str | None:
    from mitmproxy.addons import proxyserver
    from mitmproxy.proxy import server

    return (
        missing_instance_attributes(proxyserver.Proxyserver, "connections")
        or missing_attributes(server, "ConnectionHandler", "ConnectionIO")
        or missing_instance_attributes(server.ConnectionHandler, "transports", "client")
        or missing_instance_attributes(server.ConnectionIO, "reader", "writer")
    )


def connection_handler(master: Any, client_id: str) -> Any:
    """mitmproxy's handler of a client connection, or None (unknown, or the patch is off)."""
    if master is None or not is_active("client_sockets"):
        return None
    proxyserver = master.addons.get("proxyserver")
    connections = getattr(proxyserver, "connections", None)
    return connections.get(client_id) if connections is not None else None


def connection_handlers(master: Any) -> list[Any]:
    """Every client connection's handler (empty when the patch is off)."""
    if master is None or not is_active("client_sockets"):
        return []
    proxyserver = master.addons.get("proxyserver")
    return list(getattr(proxyserver, "connections", {}).values())


def client_streams(handler: Any) -> Any:
    """The client's ``ConnectionIO`` (``reader``, ``writer``) of a handler, or None."""
    try:
        return handler.transports.get(handler.client)
    except AttributeError:
        return None


def reset_client(handler: Any) -> bool:
    """Abort the client's TCP connection with an RST (SO_LINGER 0). Returns False when the
    socket is not reachable."""
    try:
        writer = handler.transports[handler.client].writer
        sock = writer.get_extra_info("socket")
        if sock is None:
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    except (AttributeError, KeyError, OSError) as exc:
        logger.debug("cannot reset the client connection: %s", exc)
        return False
    return True


async def flushed(handler: Any, timeout: float) -> bool:
    """Wait until every byte written to the client has left: asyncio's buffer is empty and
    the kernel's send queue is acknowledged (SIOCOUTQ, Linux). False after ``timeout`` (a
    client that stopped reading), or when the socket is not reachable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        writer = handler.transports[handler.client].writer
        sock = writer.get_extra_info("socket")
        while True:
            if writer.transport.get_write_buffer_size() == 0 and _unacked(sock) == 0:
                return True
            if loop.time() >= deadline or writer.is_closing():
                return False
            await asyncio.sleep(0.002)
    except (AttributeError, KeyError, OSError) as exc:
        logger.debug("cannot watch the client connection's send queue: %s", exc)
        return False


def _unacked(sock: Any) -> int:
    """Bytes in the socket's send queue not yet acknowledged by the peer (0 if unknown)."""
    if sock is None or not hasattr(termios, "TIOCOUTQ"):
        return 0
    out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", out)[0])


def send_to_client(handler: Any, data: bytes) -> bool:
    """Write raw bytes to the client (a TLS alert mitmproxy would not send). Returns False
    when the client's writer is not reachable or closing."""
    writer = getattr(client_streams(handler), "writer", None)
    if writer is None or writer.is_closing():
        return False
    writer.write(data)
    return True


def close_client(handler: Any) -> None:
    """Close the client's side of a handler's connection (when it is not closing already)."""
    writer = getattr(client_streams(handler), "writer", None)
    if writer is not None and not writer.is_closing():
        writer.close()


PATCH = Patch(
    name="client_sockets",
    target="mitmproxy's proxyserver.connections[id].transports[client] (reader, writer)",
    check=check,
    apply=lambda _: None,  # read only: the helpers above ask is_active
    fallback="abort: reset closes instead of resetting; delays count from when mitmproxy "
    "read the request; stopping leaves open clients to mitmproxy",
)
