"""When a new connection's first request arrived: the kernel's receive time (Linux).

mitmproxy stamps a request when it has parsed its head, which under load can be well
after its bytes came in. :func:`head_waiting` peeks (without consuming) at the bytes
waiting in a new client connection's socket and stream buffer, reached through
:mod:`.clientsock`, and reads the time the kernel received them (``SO_TIMESTAMPNS``), which
the kernel records while :class:`KernelStamps` asks it to. Without this patch (or where
the kernel cannot say), a delay counts from when mitmproxy read the request.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time
from typing import Any

from chaosproxy.proxy_addons._internals import Patch, is_active, missing_instance_attributes


def head_waiting(handler: Any) -> float | None:
    """When a complete HTTP/1 request head from the client was there to be read (in its
    socket, or read into its stream's buffer), peeked without consuming it; None when
    there is none. The time is when the kernel received its last bytes, where it can say
    (they still wait in the socket and :class:`KernelStamps` runs), else now. None when
    not reachable."""
    received: float | None = None
    try:
        io = handler.transports[handler.client]
        data = bytes(getattr(io.reader, "_buffer", b""))
        fd = io.writer.get_extra_info("socket").fileno()
        with socket.socket(fileno=os.dup(fd)) as sock:
            if _SO_TIMESTAMPNS:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            try:
                peeked, ancillary, _, _ = sock.recvmsg(
                    _PEEK, _STAMP_SPACE, socket.MSG_PEEK | socket.MSG_DONTWAIT
                )
            except BlockingIOError:
                pass
            else:
                data += peeked
                received = _stamp(ancillary)
    except (AttributeError, KeyError, OSError, TypeError, ValueError):
        return None
    line, sep, _ = data.partition(b"\r\n")
    if not (sep and line.endswith((b" HTTP/1.1", b" HTTP/1.0")) and b"\r\n\r\n" in data):
        return None
    now = time.time()
    if received is None or not now - _STAMP_TRUSTED < received <= now:
        return now  # no stamp, or not a plausible one (another clock, a clock step)
    return received


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
            seconds, nanoseconds = struct.unpack("qq", value[:16])
            return float(seconds + nanoseconds / 1e9)
    return None


class KernelStamps:
    """Has the kernel stamp received packets with their arrival time, for
    :func:`head_waiting`. Linux stamps packets only while some socket asks for receive
    timestamps; this one does, for as long as the proxy runs. Elsewhere, a no-op."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def start(self) -> None:
        if self._sock is not None or not _SO_TIMESTAMPNS:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            sock.close()
            return
        self._sock = sock

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def arrival_of(handler: Any) -> float | None:
    """:func:`head_waiting` when the patch is active, else None (mitmproxy's own stamp)."""
    if handler is None or not is_active("receive_times"):
        return None
    return head_waiting(handler)


#: How much of a new connection's waiting bytes :func:`head_waiting` looks at.
_PEEK = 16 * 1024
#: Linux's SO_TIMESTAMPNS (receive times in nanoseconds; not named by Python's socket):
#: 35 where the kernel uses the generic socket options (not alpha, mips, parisc, sparc).
_SO_TIMESTAMPNS = (
    getattr(socket, "SO_TIMESTAMPNS", 35)
    if sys.platform == "linux"
    and os.uname().machine in {"x86_64", "aarch64", "i686", "armv7l", "riscv64", "ppc64le", "s390x"}
    else 0
)
_STAMP_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
#: A kernel receive time further back than this (seconds) is not believed.
_STAMP_TRUSTED = 30.0


def check() -> str | None:
    from chaosproxy.proxy_addons._internals import clientsock

    problem = clientsock.check()
    if problem:
        return problem
    if not is_active("client_sockets"):
        return "it reads the client sockets, and the client_sockets patch is off"
    problem = missing_instance_attributes(asyncio.StreamReader, "_buffer")
    if problem:
        return problem
    if not hasattr(socket.socket, "recvmsg"):
        return "socket.recvmsg is not available on this platform"
    return None


PATCH = Patch(
    name="receive_times",
    target="the client socket and asyncio.StreamReader._buffer of a new connection "
    "(via client_sockets), SO_TIMESTAMPNS",
    check=check,
    apply=lambda _: None,  # read only: arrival_of asks is_active
    fallback="a delay counts from when mitmproxy read the request",
)
