"""``stream_stall``: a streamed answer stops for a while after N events or bytes."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from chaosproxy.core.fault import Duration, Wire, check_delay, register
from chaosproxy.core.streams import End, StreamPlan
from chaosproxy.core.units import format_duration
from chaosproxy.faults.stream_cut import Mode, StreamPoint


@register
class StreamStall(StreamPoint):
    """The first ``events`` events (or ``bytes`` bytes) stream through, then nothing comes
    for ``pause``; then the rest follows (``then: continue``) or the body ends as
    ``stream_cut`` would end it (``then: cut``, with ``mode``: reset by default). The
    upstream is not read during the pause: it is held back, not buffered."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["events"]}, {"required": ["bytes"]}],
            # mode says how a cut ends: only with then: cut
            "if": {"required": ["mode"]},
            "then": {"required": ["then"], "properties": {"then": {"const": "cut"}}},
        }
    )

    type: Literal["stream_stall"] = "stream_stall"
    pause: Duration = Field(description="how long nothing comes")
    then: Literal["continue", "cut"] = Field(
        "continue", description="after the pause: let the rest through, or end the body"
    )
    mode: Mode | None = Field(
        None, description="then: cut: how the body ends (clean, reset or truncated; reset)"
    )
    allow_long: bool = False

    @model_validator(mode="after")
    def _mode_with_cut(self) -> StreamStall:
        check_delay(self.pause, "pause", self.allow_long)
        if self.mode is not None and self.then != "cut":
            raise ValueError("mode says how a cut ends: give it with then: cut")
        return self

    @property
    def end(self) -> End | None:
        return End(self.mode or "reset") if self.then == "cut" else None

    async def apply(self, wire: Wire) -> None:
        after, unit = self.point
        wire.shape(StreamPlan(after=after, unit=unit, pause=self.pause, end=self.end))

    def describe(self) -> str:
        text = f"stream_stall {format_duration(self.pause)} {self.describe_point()}"
        end = self.end
        return text + (f", then cut ({end})" if end is not None else ", then continue")
