"""``throttle``: the answer's headers arrive, then its body trickles at a set rate.

The fault only says how fast; the addon routes the flow through a loopback relay
(``proxy_addons/relay.py``) that fetches the upstream's answer and writes its body on at
that pace, so large bodies are never held in memory and other flows never wait.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from chaosproxy.core.fault import (
    MIN_RATE,
    Duration,
    Fault,
    Pacing,
    Rate,
    Size,
    Wire,
    check_delay,
    register,
)
from chaosproxy.core.units import format_duration

#: In ``rate`` mode each write carries this many seconds' worth of bytes (well under the
#: 100 ms of rate a burst may reach).
SLICE = 0.05


def format_size(n: float) -> str:
    """``10KB``, ``1.5MB`` or ``512B``: sizes the way scenario files write them."""
    for unit, size in (("MB", 1000**2), ("KB", 1000)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n:g}B"


@register
class Throttle(Fault):
    """Headers first, then the body at ``rate`` (or ``chunk`` bytes every ``interval``),
    optionally after a ``first_byte`` wait. No write carries more than 100 ms of rate."""

    type: Literal["throttle"] = "throttle"
    rate: Rate | None = None
    chunk: Size | None = None
    interval: Duration | None = None
    first_byte: Duration = 0.0
    allow_long: bool = False

    streams_body: ClassVar[bool] = True

    @model_validator(mode="after")
    def _one_pace(self) -> Throttle:
        if self.rate is not None:
            if self.chunk is not None or self.interval is not None:
                raise ValueError("give rate, or chunk and interval, not both")
            if self.rate <= 0:
                raise ValueError("rate must be above 0")
        elif self.chunk is None or self.interval is None:
            raise ValueError("give rate (e.g. 10KB/s), or chunk (e.g. 1KB) and interval (e.g. 1s)")
        elif self.chunk < 1 or self.interval <= 0:
            raise ValueError("chunk must be at least 1 byte and interval above 0")
        check_delay(self.first_byte, "first_byte", self.allow_long)
        if self.interval is not None:
            check_delay(self.interval, "interval", self.allow_long)
        rate = self.pacing().rate
        if rate < MIN_RATE and not self.allow_long:
            raise ValueError(
                f"a rate of {rate:g} bytes/s is below {MIN_RATE:g} byte/s (a 10 KB body would "
                f"take {10_000 / rate / 3600:.3g} hours); set allow_long: true if you mean it"
            )
        return self

    def pacing(self) -> Pacing:
        if self.rate is not None:
            return Pacing(self.rate, max(1, int(self.rate * SLICE)), self.first_byte)
        assert self.chunk is not None and self.interval is not None
        return Pacing(self.chunk / self.interval, self.chunk, self.first_byte)

    async def apply(self, wire: Wire) -> None:
        wire.pace(self.pacing())

    def describe(self) -> str:
        if self.rate is not None:
            text = f"throttle {format_size(self.rate)}/s"
        else:
            assert self.chunk is not None and self.interval is not None
            text = f"throttle {format_size(self.chunk)} every {format_duration(self.interval)}"
        if self.first_byte:
            text += f", first byte after {format_duration(self.first_byte)}"
        return text
