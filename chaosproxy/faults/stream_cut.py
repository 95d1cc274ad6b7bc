"""``stream_cut``: a streamed answer (an LLM's tokens as SSE) ends after N events or bytes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaosproxy.core.fault import Wire, register
from chaosproxy.core.streams import End, StreamPlan
from chaosproxy.faults._stream import Mode, StreamPoint


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
