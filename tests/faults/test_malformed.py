"""``malformed`` on a fake wire: every mode, the JSON edge cases, and the loader's checks."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from chaosproxy.core.scenario import ScenarioError, load_data
from chaosproxy.faults.malformed import Malformed, break_json, mutate
from tests.faults.fakewire import FakeResponse, FakeWire

FORECAST = {
    "city": "berlin",
    "current": {"temp_c": 21.5, "summary": "sunny", "wind": {"speed": 3}},
    "daily": [{"day": 1, "temp_max": 24}, {"day": 2, "temp_max": 19}],
}


def run(fault: Malformed, body: bytes, **response) -> FakeWire:
    wire = FakeWire(response=FakeResponse(body=body, **response), seed=5)
    asyncio.run(fault.apply(wire))
    return wire


def test_truncate_asks_the_wire_to_cut_at_keep() -> None:
    wire = run(Malformed(type="malformed", mode="truncate", keep=0.25), b"x" * 100)
    assert wire.actions == [("cut", 0.25)]
    assert run(Malformed(type="malformed", mode="truncate"), b"x").actions == [("cut", 0.5)]


@pytest.mark.parametrize("seed", range(200))
def test_invalid_json_never_parses_and_stays_json_looking(seed: int) -> None:
    text = json.dumps(FORECAST)
    broken = break_json(text, random.Random(seed))
    with pytest.raises(ValueError):
        json.loads(broken)
    assert broken.startswith("{")


@pytest.mark.parametrize("text", ["1", "0", '""', "[]", "{}", "null", "12345", '"a"'])
def test_invalid_json_breaks_even_tiny_documents(text: str) -> None:
    for seed in range(30):
        with pytest.raises(ValueError):
            json.loads(break_json(text, random.Random(seed)))


def test_invalid_json_is_seeded() -> None:
    text = json.dumps(FORECAST)
    assert break_json(text, random.Random(3)) == break_json(text, random.Random(3))
    assert len({break_json(text, random.Random(s)) for s in range(20)}) > 5


def test_invalid_json_keeps_the_content_type() -> None:
    wire = run(Malformed(type="malformed", mode="invalid_json"), json.dumps(FORECAST).encode())
    assert wire.response is not None
    assert wire.response.headers == {"content-type": "application/json"}
    with pytest.raises(ValueError):
        json.loads(wire.response.body)


def test_json_modes_leave_a_non_json_body_as_it_is_and_log(caplog) -> None:
    for fault in (
        Malformed(type="malformed", mode="invalid_json"),
        Malformed(type="malformed", mode="mutate_json", fields=["a"]),
    ):
        for body in (b"<html>hi</html>", b"", b"\xff\xfe\x00binary"):
            caplog.clear()
            wire = run(fault, body)
            assert wire.response is not None and wire.response.body == body
            assert "is not JSON" in caplog.text


def test_garbage_is_random_bytes_of_the_same_length() -> None:
    body = json.dumps(FORECAST).encode()
    wire = run(Malformed(type="malformed", mode="garbage"), body)
    assert wire.response is not None
    assert len(wire.response.body) == len(body) and wire.response.body != body
    again = run(Malformed(type="malformed", mode="garbage"), body)
    assert again.response is not None and again.response.body == wire.response.body
    empty = run(Malformed(type="malformed", mode="garbage"), b"")
    assert empty.response is not None and empty.response.body == b""


def test_empty_is_a_200_without_a_body() -> None:
    wire = run(
        Malformed(type="malformed", mode="empty"),
        b"abc",
        status=201,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert wire.response is not None
    assert (wire.response.status, wire.response.body) == (200, b"")
    assert "content-encoding" not in wire.response.headers


def test_wrong_content_type_answers_an_html_502() -> None:
    wire = run(Malformed(type="malformed", mode="wrong_content_type"), b"{}")
    [(action, status, headers, body)] = wire.actions
    assert (action, status) == ("respond", 502)
    assert headers["content-type"].startswith("text/html")
    assert body.startswith(b"<!DOCTYPE html>") and b"rule-1" in body


@pytest.mark.parametrize(
    ("path", "action", "expected"),
    [
        ("city", "drop", {"current", "daily"}),
        ("current.temp_c", "drop", None),
        ("current.temp_c", "null", None),
        ("current.temp_c", "wrong_type", "21.5"),
        ("current.summary", "wrong_type", 5),
        ("current.wind", "wrong_type", [3]),
        ("daily", "wrong_type", {"0": {"day": 1, "temp_max": 24}, "1": {"day": 2, "temp_max": 19}}),
        ("daily.1.temp_max", "wrong_type", "19"),
        ("daily.-1.day", "null", None),
        ("daily.*.temp_max", "drop", None),
    ],
)
def test_mutate_json_paths_and_actions(path: str, action: str, expected: object) -> None:
    doc = json.loads(json.dumps(FORECAST))
    assert mutate(doc, path, action) >= 1  # type: ignore[arg-type]
    if path == "city":
        assert set(doc) == expected
    elif path == "current.temp_c":
        if action == "drop":
            assert "temp_c" not in doc["current"] and doc["current"]["summary"] == "sunny"
        else:
            assert doc["current"]["temp_c"] == expected
    elif path == "current.summary":
        assert doc["current"]["summary"] == expected
    elif path == "current.wind":
        assert doc["current"]["wind"] == expected
    elif path == "daily":
        assert doc["daily"] == expected
    elif path == "daily.1.temp_max":
        assert doc["daily"][1]["temp_max"] == expected
    elif path == "daily.-1.day":
        assert doc["daily"][1]["day"] is None and doc["daily"][0]["day"] == 1
    else:
        assert doc["daily"] == [{"day": 1}, {"day": 2}]


def test_mutate_json_drops_list_items_from_the_end() -> None:
    doc = {"a": [1, 2, 3]}
    assert mutate(doc, "a.*", "drop") == 3 and doc == {"a": []}


def test_mutate_json_through_the_fault_keeps_the_rest(caplog) -> None:
    fault = Malformed(
        type="malformed", mode="mutate_json", fields=["current.temp_c", "nowhere"], action="drop"
    )
    wire = run(fault, json.dumps(FORECAST).encode())
    assert wire.response is not None
    doc = json.loads(wire.response.body)
    expected = json.loads(json.dumps(FORECAST))
    del expected["current"]["temp_c"]
    assert doc == expected
    assert "has no nowhere" in caplog.text


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"mode": "mutate_json"}, "rules[0].fault: mode mutate_json needs fields"),
        ({"mode": "garbage", "fields": ["a"]}, "fields and action go with mode mutate_json"),
        ({"mode": "empty", "keep": 0.3}, "keep goes with mode truncate"),
        ({"mode": "truncate", "keep": 1}, "keep must be below 1"),
        ({"mode": "truncate", "keep": 2}, "rules[0].fault.keep: must be between 0 and 1"),
        ({"mode": "mutate_json", "fields": ["a..b"]}, "fields are dotted paths"),
        ({"mode": "shred"}, "rules[0].fault.mode: must be 'truncate', "),
    ],
)
def test_loader_refuses_parameters_that_do_not_fit(fault: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_data({"rules": [{"fault": {"type": "malformed", **fault}}]}, "s.yaml")
    assert message in str(err.value)


def test_the_shipped_malformed_json_breaks_what_the_demo_client_validates() -> None:
    from chaosproxy.core.scenario import resolve
    from chaosproxy.demo_app.upstream import forecast
    from chaosproxy.demo_app.weather import InvalidForecast, validate_forecast

    scenario, _ = resolve("malformed-json")
    body = json.dumps(forecast("berlin")).encode()
    validate_forecast(json.loads(body))  # the upstream's own answer is fine
    for rule in scenario.rules:
        [fault] = rule.fault
        assert isinstance(fault, Malformed)
        wire = run(fault, body)
        assert wire.response is not None
        with pytest.raises((ValueError, InvalidForecast)):
            validate_forecast(json.loads(wire.response.body))
