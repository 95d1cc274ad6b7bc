"""``stream_cut``: a streamed answer (an LLM's tokens as SSE) ends after N events or bytes.

Also the point every stream fault acts at (:class:`StreamPoint`, which ``stream_stall``
shares): ``events: N`` counts Server-Sent Events on ``text/event-stream`` (parsed, see
:mod:`chaosproxy.core.streams`) and HTTP/1.1 chunks on other bodies; ``bytes: N`` counts
body bytes. A stream fault acts before the upstream is called: it gives the wire a
:class:`~chaosproxy.core.streams.StreamPlan`, and the proxy shapes the body as it streams.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from chaosproxy.core.fault import Fault, Range, Size, Wire, register
from chaosproxy.core.streams import End, StreamPlan, Unit
from chaosproxy.faults.throttle import format_size

#: How a cut stream ends for the client (``mode``).
Mode = Literal["clean", "reset", "truncated"]

Count = Annotated[int, Range(0, None, "must be a whole number, 0 or more")]


class StreamPoint(Fault):
    """A stream fault acting after ``events`` events or ``bytes`` bytes of the body."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["events"]}, {"required": ["bytes"]}]}
    )

    events: Count | None = Field(
        None,
        description="act after this many events: SSE events on text/event-stream (those with "
        "a data field), chunks of a chunked body otherwise",
    )
    bytes_: Size | None = Field(None, alias="bytes", description="act after this many body bytes")

    streams_body: ClassVar[bool] = True

    @model_validator(mode="after")
    def _one_point(self) -> StreamPoint:
        if (self.events is None) == (self.bytes_ is None):
            raise ValueError("give events (e.g. events: 5) or bytes (e.g. bytes: 2KB), not both")
        return self

    @property
    def point(self) -> tuple[int, Unit]:
        if self.events is not None:
            return self.events, Unit.EVENTS
        assert self.bytes_ is not None
        return self.bytes_, Unit.BYTES

    def describe_point(self) -> str:
        if self.events is not None:
            return f"after {self.events} event{'' if self.events == 1 else 's'}"
        assert self.bytes_ is not None
        return f"after {format_size(self.bytes_)}"


@register
class StreamCut(StreamPoint):
    """The head and the first ``events`` events (or ``bytes`` bytes) of the upstream's
    answer go through as they stream, then the body ends: ``mode: clean`` ends it properly
    (the client sees a complete, shorter answer), ``reset`` with a TCP RST, ``truncated``
    with a chunk announced but only half sent before the connection closes (an incomplete
    chunked body). The body is never held whole in memory."""

    type: Literal["stream_cut"] = "stream_cut"
    mode: Mode = Field("reset", description="how the body ends: clean, reset or truncated")

    async def apply(self, wire: Wire) -> None:
        after, unit = self.point
        wire.shape(StreamPlan(after=after, unit=unit, end=End(self.mode)))

    def describe(self) -> str:
        return f"stream_cut {self.describe_point()} ({self.mode})"
