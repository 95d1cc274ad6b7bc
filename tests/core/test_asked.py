"""The X-Chaos-Fault grammar (request_faults): what parses, and located refusals."""

from __future__ import annotations

import pytest

from chaosproxy.core.asked import MAX_FAULTS, MAX_LENGTH, AskError, parse
from chaosproxy.core.scenario import load_text


@pytest.mark.parametrize(
    ("value", "described"),
    [
        ("error=503", ["error 503"]),
        ("ERROR=502", ["error 502"]),
        ("latency=200ms", ["latency 200ms"]),
        (" latency = 1.5s ;error=500 ; ", ["latency 1.5s", "error 500"]),
        ("abort", ["abort reset"]),
        ("abort=close", ["abort close"]),
        ("timeout=2s", ["timeout 2s then close"]),
    ],
)
def test_the_grammar_names_faults_in_order(value: str, described: list[str]) -> None:
    assert [f.describe() for f in parse(value)] == described


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "names no fault (use error, latency, abort, timeout, separated by ';')"),
        (" ; ", "names no fault"),
        ("boom", "part 1 ('boom'): unknown fault 'boom'; use error, latency, abort, timeout"),
        ("error", "part 1 ('error'): error needs a value (error=...)"),
        ("latency=", "part 1 ('latency='): latency= has no value"),
        ("latency=1s; error=99", "part 2 ('error=99'): must be an HTTP status between 200 and 599"),
        ("error=1e3", "part 1 ('error=1e3'): must be a whole number (an HTTP status), got '1e3'"),
        ("latency=soon", "part 1 ('latency=soon'): 'soon' is not a duration"),
        ("latency=11m", "part 1 ('latency=11m'): delay of 11m is longer than 10m"),
        ("abort=now", "part 1 ('abort=now'): Input should be 'reset' or 'close'"),
        (";".join(["error=500"] * (MAX_FAULTS + 1)), f"names 9 faults; at most {MAX_FAULTS}"),
        ("error=500;" * 60, f"longer than {MAX_LENGTH} characters"),
    ],
)
def test_bad_values_are_refused_naming_the_part(value: str, message: str) -> None:
    with pytest.raises(AskError) as err:
        parse(value)
    assert str(err.value).startswith(message), str(err.value)


def test_request_faults_is_a_scenario_switch_off_by_default() -> None:
    assert load_text("rules: []").request_faults is False
    assert load_text("request_faults: true\nrules: []").request_faults is True


def test_the_explain_document_says_what_the_header_asks_for() -> None:
    from chaosproxy.control.documents import explain_document, explain_request
    from chaosproxy.core.engine import Engine

    engine = Engine(load_text("request_faults: true\nrules: []"), seed=1)
    asks = explain_request("GET", "http://h/x", [("X-Chaos-Fault", "abort=close")])
    assert explain_document(engine, asks)["asked"] == {"faults": "abort close"}
    bad = explain_request("GET", "http://h/x", [("x-chaos-fault", "nope")])
    assert explain_document(engine, bad)["asked"] == {
        "ignored": "part 1 ('nope'): unknown fault 'nope'; use error, latency, abort, timeout"
    }
    assert explain_document(engine, explain_request("GET", "http://h/x"))["asked"] is None
    off = Engine(load_text("rules: []"))
    assert explain_document(off, asks)["asked"] is None
