"""``dns_failure``: the upstream's name does not resolve."""

from __future__ import annotations

from typing import ClassVar, Literal

from chaosproxy.core.fault import Fault, Stage, Wire, register

#: What the resolver says of a name that does not exist (glibc's EAI_NONAME).
NO_SUCH_NAME = "[Errno -2] Name or service not known"


@register
class DnsFailure(Fault):
    """The upstream's host name does not resolve, as a forward proxy finds for a mistyped
    or vanished host: a request is answered 502 with mitmproxy's error page naming
    ``[Errno -2] Name or service not known``; a CONNECT is refused with 502 (the tunnel
    never opens). No lookup and no connection are made. Meant for forward mode (a client
    asking for hosts by name); in reverse mode it answers the same. Matches on ``host``
    only."""

    type: Literal["dns_failure"] = "dns_failure"

    stages: ClassVar[tuple[Stage, ...]] = (Stage.CONNECT,)

    async def apply(self, wire: Wire) -> None:
        wire.fail_connect(NO_SUCH_NAME)

    def describe(self) -> str:
        return "dns_failure"
