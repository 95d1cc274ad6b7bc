"""``header``: what it does to an answer (through the FakeWire), and what it refuses."""

from __future__ import annotations

import asyncio
import re

import pytest

from chaosproxy.core.fault import FAULT_TYPES, Stage
from chaosproxy.core.scenario import ScenarioError, load_text
from chaosproxy.faults.header import Header
from tests.faults.fakewire import FakeResponse, FakeWire


def applied(fault: Header, headers: dict[str, str]) -> FakeWire:
    wire = FakeWire(response=FakeResponse(headers=dict(headers)))
    asyncio.run(fault.apply(wire))
    return wire


def test_set_replaces_a_header_in_any_case_and_adds_new_ones() -> None:
    fault = Header(set={"Cache-Control": "no-store", "X-Extra": "1"})
    wire = applied(fault, {"cache-control": "max-age=60", "content-type": "application/json"})
    assert wire.response is not None and wire.response.headers == {
        "content-type": "application/json",
        "Cache-Control": "no-store",
        "X-Extra": "1",
    }
    assert wire.actions == []  # no answer replaced, nothing closed


def test_remove_drops_every_spelling_and_ignores_absent_names() -> None:
    fault = Header(remove=("Content-Type", "ETag"))
    wire = applied(fault, {"content-type": "application/json", "x-other": "kept"})
    assert wire.response is not None and wire.response.headers == {"x-other": "kept"}
    assert wire.response.body == b'{"ok": true}' and wire.response.status == 200


def test_without_an_answer_it_does_nothing() -> None:
    wire = FakeWire()
    asyncio.run(Header(remove=("Content-Type",)).apply(wire))
    assert wire.actions == [] and wire.response is None


def test_loaded_from_yaml_it_acts_on_the_response_and_describes_itself() -> None:
    scenario = load_text(
        "rules:\n"
        "  - name: no-type\n"
        "    fault: {type: header, set: {Cache-Control: no-store}, remove: [Content-Type]}\n"
    )
    [fault] = scenario.rules[0].fault
    assert isinstance(fault, Header) and FAULT_TYPES["header"] is Header
    assert fault.stage is Stage.RESPONSE and Header.capabilities().stages == (Stage.RESPONSE,)
    assert fault.describe() == "header set Cache-Control; remove Content-Type"
    assert Header(set={"X-A": "1"}).describe() == "header set X-A"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("{type: header}", "rules[0].fault: give set (name: value) or remove"),
        ("{type: header, remove: [Content-Length]}", "content-length frames the body"),
        ("{type: header, set: {Transfer-Encoding: x}}", "transfer-encoding frames the body"),
        ("{type: header, set: {X-A: '1'}, remove: [x-a]}", "x-a is named twice"),
        ("{type: header, remove: [Content Type]}", "rules[0].fault.remove[0]: 'Content Type' is"),
        ('{type: header, set: {X-A: "a\\r\\nb"}}', "a header value may not contain CR"),
        ("{type: header, remove: [X-A], on: request}", "unknown key 'on'"),
    ],
)
def test_refused_with_a_located_error(fault: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)) as info:
        load_text(f"rules:\n  - fault: {fault}\n")
    assert str(info.value).startswith("<string>:2:")
