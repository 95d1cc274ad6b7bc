"""Streamed bodies, counted: Server-Sent Events, chunks and bytes, and where a fault acts.

The stream faults (``stream_cut``, ``stream_stall``, ``stream_slow_start``) say *what* to do
to a body as it streams through, as a :class:`StreamPlan`; the proxy's relay feeds the
upstream's body to a :class:`Counter` made for the answer (:func:`counter_for`), which says
where in the bytes the plan's point is reached. No mitmproxy, no sockets: the counting is
tested on its own.

``text/event-stream`` bodies are parsed as the WHATWG HTML standard says an EventSource
reads them (section 9.2.6): lines end with CRLF, LF or CR (a CRLF split across two reads
is one line end); a blank line ends an event; it counts as an event only when it would
be dispatched, i.e. it has a ``data`` field (a comment ``: keep-alive`` or a block with
only ``id:``/``retry:``/``event:`` lines is passed on but not counted). Other bodies count
the chunks of their HTTP/1.1 chunked framing as events; a body that is not chunked has no
events (only its bytes are counted).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass


class Unit(enum.StrEnum):
    """What ``after: N`` counts."""

    EVENTS = "events"
    BYTES = "bytes"


class End(enum.StrEnum):
    """How a cut stream ends for the client."""

    CLEAN = "clean"
    """The body ends properly (HTTP/1.1: the last chunk; HTTP/2: END_STREAM)."""
    RESET = "reset"
    """A TCP RST (HTTP/2: RST_STREAM)."""
    TRUNCATED = "truncated"
    """A chunk announced but only half of it sent, then the connection closes (HTTP/1.1;
    HTTP/2: RST_STREAM)."""


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What a stream fault does to a body as it streams: wait ``first_byte`` seconds after
    the head before the first body byte; once ``after`` ``unit`` have passed (None: never),
    pause ``pause`` seconds, then end the body as ``end`` says (None: let the rest through).
    """

    first_byte: float = 0.0
    after: int | None = None
    unit: Unit = Unit.EVENTS
    pause: float = 0.0
    end: End | None = None

    @property
    def rewrites_framing(self) -> bool:
        """The body may end early and cleanly, or with a half chunk: it goes on chunked
        (an upstream's Content-Length would promise more than comes)."""
        return self.after is not None and self.end in (End.CLEAN, End.TRUNCATED)


def is_event_stream(content_type: str | None) -> bool:
    """The answer is Server-Sent Events (``text/event-stream``, any parameters or case)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


class Counter(abc.ABC):
    """Counts a body as it streams and finds where the ``limit``-th unit ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events = 0
        self.bytes = 0

    @property
    def reached(self) -> bool:
        return self.count >= self.limit

    @property
    @abc.abstractmethod
    def count(self) -> int:
        """How many units (events, chunks or bytes) were counted so far."""

    def split(self, data: bytes, chunk_end: bool = False) -> int | None:
        """Feed the next ``data`` (``chunk_end``: it ends a chunk of the upstream's chunked
        framing). Returns the offset in ``data`` just after the point where the limit is
        reached (0: before any of it), or None when it is not reached within ``data``.
        Once reached, it returns 0 for every later ``data``; bytes after the point are not
        counted."""
        if self.reached:
            return 0
        at = self._advance(data, chunk_end)
        self.bytes += len(data) if at is None else at
        return at

    @abc.abstractmethod
    def _advance(self, data: bytes, chunk_end: bool) -> int | None:
        """Count ``data``; the offset just after the point when it lies within it."""


class ByteCounter(Counter):
    """``after: N bytes``: the point is after the body's Nth byte."""

    @property
    def count(self) -> int:
        return self.bytes

    def _advance(self, data: bytes, chunk_end: bool) -> int | None:
        left = self.limit - self.bytes
        return left if left <= len(data) else None


class ChunkCounter(Counter):
    """``after: N events`` on a body that is not SSE: the point is after its Nth chunk."""

    @property
    def count(self) -> int:
        return self.events

    def _advance(self, data: bytes, chunk_end: bool) -> int | None:
        if chunk_end:
            self.events += 1
            if self.reached:
                return len(data)
        return None


class EventCounter(Counter):
    """``after: N events`` on ``text/event-stream``: the point is after the blank line that
    ends the Nth event that has a ``data`` field. When that line ends with a CRLF split
    across two reads, the point is after the CR: the event has ended there, and waiting
    for the LF would hold the stream up to the next read."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._line = bytearray()  # the current line so far (only its field name matters)
        self._cr = False  # the last byte seen was a CR (its LF, if any, is the same end)
        self._has_data = False  # the current event has a data field
        self._first = True  # at the very start of the stream (a BOM is skipped there)

    @property
    def count(self) -> int:
        return self.events

    def _advance(self, data: bytes, chunk_end: bool) -> int | None:
        i, n = 0, len(data)
        if self._first and data:
            self._first = False
            if data.startswith(b"\xef\xbb\xbf"):  # a byte order mark starts no field
                i = 3
        while i < n:
            byte = data[i]
            if self._cr:
                self._cr = False
                if byte == 0x0A:  # the LF of a CRLF: the line already ended at its CR
                    i += 1
                    continue
            if byte == 0x0D or byte == 0x0A:
                self._cr = byte == 0x0D
                if self._end_line():
                    at = i + 1
                    if self._cr and at < n and data[at] == 0x0A:
                        self._cr = False
                        at += 1  # the CRLF that ends the event goes with it
                    return at
                i += 1
                continue
            # a line's bytes: only its first few tell the field name
            if len(self._line) < 5:
                self._line.append(byte)
            i += 1
            # skip the rest of a long line quickly
            if len(self._line) >= 5:
                j = _next_line_end(data, i)
                i = j
        return None

    def _end_line(self) -> bool:
        """A line ended: True when it was the blank line that completes the limit-th event."""
        line = bytes(self._line)
        self._line.clear()
        if not line:
            if self._has_data:
                self._has_data = False
                self.events += 1
                return self.reached
            return False
        if line == b"data" or line.startswith(b"data:"):
            self._has_data = True
        return False


def _next_line_end(data: bytes, start: int) -> int:
    """Index of the next CR or LF in ``data`` from ``start`` (its length if none)."""
    cr, lf = data.find(b"\r", start), data.find(b"\n", start)
    ends = [i for i in (cr, lf) if i >= 0]
    return min(ends) if ends else len(data)


def counter_for(plan: StreamPlan, content_type: str | None) -> Counter | None:
    """The counter a plan needs for an answer of ``content_type`` (None: it counts nothing)."""
    if plan.after is None:
        return None
    if plan.unit is Unit.BYTES:
        return ByteCounter(plan.after)
    if is_event_stream(content_type):
        return EventCounter(plan.after)
    return ChunkCounter(plan.after)
