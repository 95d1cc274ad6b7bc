"""``stream_slow_start``: a streamed answer's first body byte comes late (time to first token)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from chaosproxy.core.fault import Duration, Fault, Wire, check_delay, register
from chaosproxy.core.streams import StreamPlan
from chaosproxy.core.units import format_duration


@register
class StreamSlowStart(Fault):
    """The upstream's status and headers arrive at once; its first body byte only ``delay``
    after them (the upstream is not read meanwhile), then the body streams as it comes.
    An LLM API's slow time to first token: clients with a read timeout shorter than
    ``delay`` give up."""

    type: Literal["stream_slow_start"] = "stream_slow_start"
    delay: Duration = Field(description="wait between the headers and the first body byte")
    allow_long: bool = False

    streams_body: ClassVar[bool] = True

    @model_validator(mode="after")
    def _sane(self) -> StreamSlowStart:
        check_delay(self.delay, "delay", self.allow_long)
        return self

    async def apply(self, wire: Wire) -> None:
        wire.shape(StreamPlan(first_byte=self.delay))

    def describe(self) -> str:
        return f"stream_slow_start {format_duration(self.delay)}"
