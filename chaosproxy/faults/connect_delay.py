"""``connect_delay``: the upstream connection takes a while to open."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from chaosproxy.core.fault import Duration, Fault, Stage, Wire, check_delay, register
from chaosproxy.core.units import format_duration


@register
class ConnectDelay(Fault):
    """The connection is made ``delay`` (± ``jitter``, uniform) later, as over a slow or
    distant network: a forward proxy's CONNECT is answered only then (the client's connect
    time grows), and a request (reverse mode, plain HTTP forward) waits that long before
    its upstream connection is opened. Unlike ``latency``, no upstream connection is opened
    during the wait. Matches on ``host`` only."""

    type: Literal["connect_delay"] = "connect_delay"
    delay: Duration = Field(description="how long the connection takes to open")
    jitter: Duration = Field(0.0, description="± this much, uniformly drawn")
    allow_long: bool = Field(False, description="allow a delay above 10 minutes")

    stages: ClassVar[tuple[Stage, ...]] = (Stage.CONNECT,)

    @model_validator(mode="after")
    def _sane(self) -> ConnectDelay:
        if self.jitter > self.delay:
            raise ValueError(
                f"jitter ({format_duration(self.jitter)}) must not be larger than the delay "
                f"({format_duration(self.delay)})"
            )
        check_delay(self.delay + self.jitter, "delay", self.allow_long)
        return self

    async def apply(self, wire: Wire) -> None:
        delay = self.delay
        if self.jitter:
            delay += wire.rng.uniform(-self.jitter, self.jitter)
        await wire.sleep_until(wire.arrival + max(0.0, delay))

    def describe(self) -> str:
        text = f"connect_delay {format_duration(self.delay)}"
        return text + (f" ±{format_duration(self.jitter)}" if self.jitter else "")
