"""``ws_delay``: WebSocket messages arrive late, in order."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from chaosproxy.core.fault import Duration, check_delay, register
from chaosproxy.core.units import format_duration
from chaosproxy.core.websocket import MessageFault, MessageWire


@register
class WsDelay(MessageFault):
    """Hold each message of an upgraded WebSocket for ``delay`` (± ``jitter``, uniform)
    before passing it on, in the direction given. Messages keep their order: one that
    arrives while an earlier one of its direction is held waits behind it. The other
    direction is not held."""

    type: Literal["ws_delay"] = "ws_delay"
    delay: Duration = Field(description="how long each message is held")
    jitter: Duration = Field(0.0, description="± this much, uniformly (at most the delay)")
    allow_long: bool = Field(False, description="allow a delay above 10 minutes")

    @model_validator(mode="after")
    def _sensible(self) -> WsDelay:
        if self.jitter > self.delay:
            raise ValueError(
                f"jitter ({format_duration(self.jitter)}) must not exceed delay "
                f"({format_duration(self.delay)})"
            )
        check_delay(self.delay + self.jitter, "delay", self.allow_long)
        return self

    def on_message(self, wire: MessageWire) -> None:
        seconds = self.delay
        if self.jitter:
            seconds += wire.rng.uniform(-self.jitter, self.jitter)
        wire.delay(max(0.0, seconds))

    def describe(self) -> str:
        jitter = f" ±{format_duration(self.jitter)}" if self.jitter else ""
        return f"ws_delay {format_duration(self.delay)}{jitter}{self._side()}"
