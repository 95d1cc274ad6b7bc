"""The decision log's record, ring, listeners and JSON lines, without a proxy."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

from chaosproxy.core.decisions import (
    OUTCOMES,
    DecisionLog,
    DecisionRecord,
    JsonLinesWriter,
    read_json_lines,
    record_from_values,
    record_values,
    request_key,
)


def record(seq: int, **changes: object) -> DecisionRecord:
    fields: dict[str, object] = {
        "seq": seq,
        "time": 1700000000.0 + seq,
        "monotonic": 100.0 + seq,
        "duration": 0.01,
        "method": "GET",
        "url": "http://up/v1/x",
        "host": "up",
        "path": "/v1/x",
        "request_key": request_key("GET", "http://up/v1/x", b""),
        "rule": None,
        "faults": (),
        "fault": None,
        "phase": None,
        "outcome": "response",
        "status": 200,
        "upstream_status": 200,
    }
    fields.update(changes)
    return DecisionRecord(**fields)  # type: ignore[arg-type]


def test_request_key_is_stable_for_retries_and_prefers_the_idempotency_key() -> None:
    a = request_key("post", "http://up/pay", b'{"amount": 3}')
    assert a == request_key("POST", "http://up/pay", b'{"amount": 3}')
    assert a.startswith("sha256:") and len(a) == len("sha256:") + 16
    assert a != request_key("POST", "http://up/pay", b'{"amount": 4}')
    assert a != request_key("PUT", "http://up/pay", b'{"amount": 3}')
    assert a != request_key("POST", "http://up/pay?x=1", b'{"amount": 3}')
    assert request_key("POST", "http://up/pay", b"a", "k-1") == "idem:k-1"
    assert request_key("POST", "http://up/other", b"b", "k-1") == "idem:k-1"


def test_record_round_trips_through_json() -> None:
    r = record(
        3,
        rule="down",
        faults=("latency", "error"),
        fault="latency 300ms + error 502",
        outcome="reset",
        status=None,
        upstream_status=None,
        added_latency=0.3,
        error="Connection killed.",
        flow_id="f-1",
    )
    doc = json.loads(r.to_json())
    assert doc["faults"] == ["latency", "error"] and doc["rule"] == "down"
    assert {"time", "method", "url", "rule", "fault", "outcome"} <= set(doc)
    assert DecisionRecord.from_dict(doc) == r
    assert r.injected and not record(1).injected
    assert set(OUTCOMES) >= {"response", "reset", "closed", "client_disconnected", "error"}


def test_record_round_trips_through_plain_values_with_a_new_seq() -> None:
    r = record(3, rule="down", faults=("error",), fault="error 503", retry_after=2.0)
    values = record_values(r)
    assert type(values) is tuple and values[0] == 3
    assert pickle.loads(pickle.dumps(values)) == values
    assert record_from_values(values) == r
    renumbered = record_from_values(values, seq=9)
    assert renumbered.seq == 9 and renumbered == dataclasses.replace(r, seq=9)


def test_ring_keeps_the_newest_and_pages_by_seq() -> None:
    log = DecisionLog(size=5)
    for _ in range(12):
        log.add(record(log.next_seq()))
    assert len(log) == 5 and log.total == 12
    assert [r.seq for r in log.records()] == [8, 9, 10, 11, 12]
    assert [r.seq for r in log.records(since=10)] == [11, 12]
    assert [r.seq for r in log.records(limit=2)] == [11, 12]
    assert log.records(since=12) == [] and log.records(limit=0) == []
    log.clear()
    assert log.records() == [] and log.next_seq() == 13


def test_listeners_get_each_record_and_a_failing_one_does_not_stop_the_others(caplog) -> None:
    log = DecisionLog()
    seen: list[int] = []

    def broken(_: DecisionRecord) -> None:
        raise RuntimeError("boom")

    log.subscribe(broken)
    unsubscribe = log.subscribe(lambda r: seen.append(r.seq))
    log.add(record(1))
    unsubscribe()
    log.add(record(2))
    assert seen == [1]
    assert "decision listener" in caplog.text and "boom" in caplog.text
    assert [r.seq for r in log.records()] == [1, 2]


def test_json_lines_writer_appends_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    writer = JsonLinesWriter(path)
    writer(record(1))
    writer(record(2, rule="down", faults=("error",), status=503))
    # each line is on disk as soon as it is written (CI may read it while the proxy runs)
    assert len(path.read_text().splitlines()) == 2
    writer.close()
    writer(record(3))  # closed: ignored, not an error
    back = read_json_lines(path.read_text().splitlines())
    assert [r.seq for r in back] == [1, 2] and back[1].status == 503
