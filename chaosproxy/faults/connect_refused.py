"""``connect_refused``: the upstream refuses the connection (nothing listens there)."""

from __future__ import annotations

from typing import ClassVar, Literal

from chaosproxy.core.fault import Fault, Stage, Wire, register


@register
class ConnectRefused(Fault):
    """The upstream connection is refused, before any exists: the client gets what the
    proxy gives for a refused upstream. A request (reverse mode, plain HTTP forward) is
    answered 502 with mitmproxy's error page naming ``[Errno 111] Connect call failed``; a
    forward proxy's CONNECT is refused with 502, so the tunnel never opens. The upstream
    sees no connection. Matches on ``host`` only."""

    type: Literal["connect_refused"] = "connect_refused"

    stages: ClassVar[tuple[Stage, ...]] = (Stage.CONNECT,)

    async def apply(self, wire: Wire) -> None:
        host, port = wire.upstream
        wire.fail_connect(f"[Errno 111] Connect call failed ('{host}', {port})")

    def describe(self) -> str:
        return "connect_refused"
