"""``tls_failure``: the client's TLS handshake with the proxy fails."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from chaosproxy.core.fault import Fault, Stage, Wire, register


@register
class TlsFailure(Fault):
    """The client's TLS handshake fails. ``mode: alert`` (the default): the proxy ends it
    with a fatal ``handshake_failure`` alert (curl exit 35, Python ``ssl.SSLError``).
    ``expired`` / ``self_signed``: the proxy presents a certificate for the host that has
    expired (signed by the proxy's CA) or is self-signed, so a client that verifies
    certificates refuses it (curl exit 60, Python ``SSLCertVerificationError``) and one
    that does not goes on. Decided at a forward proxy's CONNECT (for the handshake in the
    tunnel) or as a reverse-mode client starts its handshake; plain HTTP has none. Matches
    on ``host`` only (the CONNECT's host, or the name the client asks for by SNI)."""

    type: Literal["tls_failure"] = "tls_failure"
    mode: Literal["alert", "expired", "self_signed"] = Field(
        "alert", description="alert: a fatal alert; expired/self_signed: such a certificate"
    )

    stages: ClassVar[tuple[Stage, ...]] = (Stage.CONNECT,)
    handshake: ClassVar[bool] = True

    async def apply(self, wire: Wire) -> None:
        wire.fail_handshake(None if self.mode == "alert" else self.mode)

    def describe(self) -> str:
        return "tls_failure" + ("" if self.mode == "alert" else f" {self.mode}")
