"""``ws_drop``: WebSocket messages lost on the way, each with a probability."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chaosproxy.core.fault import Range, register
from chaosproxy.core.websocket import MessageFault, MessageWire


@register
class WsDrop(MessageFault):
    """Drop each message of an upgraded WebSocket with ``probability``, in the direction
    given (``client``: what the client sends; ``server``: what the server sends; ``both``).
    The socket stays open; the peer simply never gets the message."""

    type: Literal["ws_drop"] = "ws_drop"
    probability: Annotated[float, Range(0, 1, "must be between 0 and 1")] = Field(
        description="chance that each message is dropped"
    )

    def on_message(self, wire: MessageWire) -> None:
        if wire.rng.random() < self.probability:
            wire.drop()

    def describe(self) -> str:
        return f"ws_drop {self.probability:.0%}{self._side()}"
