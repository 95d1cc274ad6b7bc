"""Counting a streamed body: SSE events parsed (CRLF/LF/CR, comments, BOM), chunks, bytes;
the point found is the same however the body is split into reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaosproxy.core.streams import (
    ByteCounter,
    ChunkCounter,
    End,
    EventCounter,
    StreamPlan,
    Unit,
    counter_for,
    is_event_stream,
)


def point(counter, pieces: list[bytes]) -> int | None:
    """Offset in the joined pieces where the counter's limit is reached (None: never)."""
    offset = 0
    for piece in pieces:
        at = counter.split(piece)
        if at is not None:
            return offset + at
        offset += len(piece)
    return None


BODY = b"event: token\ndata: a\n\n: comment\n\nid: 7\n\ndata: b\ndata: c\n\nretry: 5\ndata\n\n"
#: where each event with a data field ends in BODY
ENDS = [BODY.index(b"a\n\n") + 3, BODY.index(b"c\n\n") + 3, len(BODY)]


@pytest.mark.parametrize(("limit", "expected"), [(0, 0), (1, ENDS[0]), (2, ENDS[1]), (3, ENDS[2])])
def test_events_end_at_the_blank_line_of_the_nth_event_with_data(limit, expected) -> None:
    # the comment block and the id-only block are passed on but dispatch no event
    assert point(EventCounter(limit), [BODY]) == expected


def test_a_stream_with_fewer_events_never_reaches_the_point() -> None:
    counter = EventCounter(4)
    assert point(counter, [BODY]) is None
    assert counter.events == 3 and counter.bytes == len(BODY)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_ends_lines_and_the_crlf_of_the_blank_line_goes_with_it(eol) -> None:
    body = BODY.replace(b"\n", eol)
    ends = [body.index(b"a" + eol * 2) + 1 + 2 * len(eol), body.index(b"c" + eol * 2)]
    assert point(EventCounter(1), [body]) == ends[0]
    assert point(EventCounter(2), [body]) == ends[1] + 1 + 2 * len(eol)


def test_a_crlf_split_between_reads_is_one_line_end() -> None:
    # "data: a\r" | "\n\r\n": the LF after the CR is not a second (blank) line
    counter = EventCounter(1)
    assert counter.split(b"data: a\r") is None
    assert counter.split(b"\n\r") == 2  # the blank line is the lone CR here
    assert counter.events == 1


def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_field() -> None:
    assert point(EventCounter(1), [b"\xef\xbb\xbfdata: x\n\n"]) == 12


def test_field_names_are_exact() -> None:
    # "datum:" and " data:" are not data fields; "data" alone is (an empty value)
    body = b"datum: 1\n\n data: 2\n\ndata\n\n"
    assert point(EventCounter(1), [body]) == len(body)


def test_once_reached_later_data_is_after_the_point_and_not_counted() -> None:
    counter = EventCounter(1)
    assert counter.split(b"data: 1\n\ndata: 2\n\n") == 9
    assert counter.split(b"data: 3\n\n") == 0
    assert counter.events == 1 and counter.bytes == 9


@given(st.data())
def test_the_point_does_not_depend_on_how_the_body_is_split(data) -> None:
    eol = data.draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    body = BODY.replace(b"\n", eol) * 2
    limit = data.draw(st.integers(0, 7))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    split, whole = point(EventCounter(limit), pieces), point(EventCounter(limit), [body])
    if split != whole:
        # the one difference allowed: a read that ends between the CR and the LF of the
        # CRLF that ends the event. The event ended at its CR (the client's parser says so
        # too), and waiting for a byte that may come much later would hold the stream back
        assert whole is not None and split == whole - 1 and split in cuts
        assert body[split - 1 : split + 1] == b"\r\n"



def test_an_event_whose_last_crlf_is_split_between_reads_ends_at_its_cr() -> None:
    # whole at the CR (a CR ends a line): not held back until the next read comes, and the
    # LF, after the point, is not read as another line end
    counter = EventCounter(1)
    assert counter.split(b"data: a\r\n\r") == 10  # the whole read
    assert counter.events == 1 and counter.bytes == 10
    assert counter.split(b"\ndata: b\r\n\r\n") == 0
    assert counter.events == 1

def test_bytes_are_counted_across_reads() -> None:
    counter = ByteCounter(5)
    assert counter.split(b"abc") is None
    assert counter.split(b"defg") == 2
    assert counter.bytes == 5 and counter.split(b"h") == 0


def test_chunks_count_where_the_upstream_ended_each_chunk() -> None:
    counter = ChunkCounter(2)
    assert counter.split(b"one", chunk_end=True) is None
    assert counter.split(b"tw", chunk_end=False) is None  # a chunk read in two parts
    assert counter.split(b"o", chunk_end=True) == 1
    assert counter.events == 2 and counter.bytes == 6


@pytest.mark.parametrize(
    ("plan", "content_type", "kind"),
    [
        (StreamPlan(after=3), "text/event-stream; charset=utf-8", EventCounter),
        (StreamPlan(after=3), "TEXT/Event-Stream", EventCounter),
        (StreamPlan(after=3), "application/x-ndjson", ChunkCounter),
        (StreamPlan(after=3), None, ChunkCounter),
        (StreamPlan(after=3, unit=Unit.BYTES), "text/event-stream", ByteCounter),
    ],
)
def test_the_counter_follows_the_unit_and_the_content_type(plan, content_type, kind) -> None:
    assert type(counter_for(plan, content_type)) is kind


def test_a_plan_without_a_point_counts_nothing_and_only_early_clean_ends_rewrite_framing() -> None:
    assert counter_for(StreamPlan(first_byte=1.0), "text/event-stream") is None
    assert not is_event_stream("") and not is_event_stream("text/plain")
    assert StreamPlan(after=1, end=End.CLEAN).rewrites_framing
    assert StreamPlan(after=1, end=End.TRUNCATED).rewrites_framing
    assert not StreamPlan(after=1, end=End.RESET).rewrites_framing
    assert not StreamPlan(after=1, pause=1.0).rewrites_framing
