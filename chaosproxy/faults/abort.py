"""``abort``: drop the connection, with a TCP reset or a plain close and no answer."""

from __future__ import annotations

from typing import ClassVar, Literal

from chaosproxy.core.fault import Fault, On, Stage, Wire, register


@register
class Abort(Fault):
    """``how: reset`` sends a TCP RST (curl exit 56, "connection reset"); ``how: close``
    closes with no reply (curl exit 52, "empty reply"). On HTTP/2 only the stream is reset.
    ``on: response`` lets the request reach the upstream first."""

    type: Literal["abort"] = "abort"
    how: Literal["reset", "close"] = "reset"
    on: On = Stage.REQUEST

    stages: ClassVar[tuple[Stage, ...]] = (Stage.REQUEST, Stage.RESPONSE)

    @property
    def stage(self) -> Stage:
        return self.on

    async def apply(self, wire: Wire) -> None:
        if self.how == "reset":
            wire.reset()
        else:
            wire.close()

    def describe(self) -> str:
        return f"abort {self.how}" + (" on response" if self.on is Stage.RESPONSE else "")
