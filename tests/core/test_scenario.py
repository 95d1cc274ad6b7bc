from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from chaosproxy.core import scenario as sc
from chaosproxy.core.fault import FAULT_TYPES, Stage
from chaosproxy.faults.abort import Abort
from chaosproxy.faults.error import Error
from chaosproxy.faults.latency import Latency
from chaosproxy.faults.rate_limit import RateLimit
from chaosproxy.faults.timeout import Timeout
from tests.support import validate_json

ROOT = Path(__file__).resolve().parents[2]
DESIGN_EXAMPLE = """\
# yaml-language-server: $schema=schema.json
version: 1
name: flaky-weather
description: One forecast call in three fails with 503; the others are slow.
seed: 7
rules:
  - name: unavailable
    match:
      host: "weather.*"
      path: "/v1/forecast/*"
      method: [GET]
      headers: {X-Tenant: acme}
      query: {units: metric}
    probability: 0.33
    skip: 0
    every: 2
    times: 10
    fault: {type: error, status: 503, headers: {Retry-After: "2"}}
  - match: {path: "/v1/forecast/*"}
    fault:
      - {type: latency, delay: 300ms, jitter: 100ms}
      - {type: error, status: 502, on: response}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(sc.ScenarioError) as err:
        sc.load_text(text, "s.yaml")
    return err.value.lines


def test_design_example_loads_into_typed_immutable_objects() -> None:
    scenario = sc.load_text(DESIGN_EXAMPLE)
    assert scenario.name == "flaky-weather"
    assert scenario.seed == 7
    first, second = scenario.rules
    assert first.name == "unavailable"
    assert first.match.method == ("GET",)
    assert first.match.headers == {"X-Tenant": "acme"}
    assert (first.probability, first.skip, first.every, first.times) == (0.33, 0, 2, 10)
    [fault] = first.fault
    assert isinstance(fault, Error)
    assert fault.status == 503 and fault.headers == {"Retry-After": "2"}
    assert second.name == "latency-2"
    latency, error = second.fault
    assert isinstance(latency, Latency) and latency.delay == 0.3 and latency.jitter == 0.1
    assert isinstance(error, Error) and error.stage is Stage.RESPONSE
    with pytest.raises(Exception, match="frozen"):
        first.probability = 1  # type: ignore[misc]


def test_defaults_follow_design() -> None:
    scenario = sc.load_text(
        "rules:\n"
        "  - fault: {type: latency, delay: 1s}\n"
        "  - fault: {type: timeout}\n"
        "  - fault: {type: error}\n"
        "  - fault: {type: abort}\n"
        "  - fault: {type: rate_limit, limit: 5}\n",
        default_name="mine",
    )
    assert scenario.name == "mine" and scenario.version == 1 and scenario.annotate is False
    latency, timeout, error, abort, rate = (r.fault[0] for r in scenario.rules)
    assert isinstance(latency, Latency) and latency.on is Stage.REQUEST and latency.jitter == 0
    assert isinstance(timeout, Timeout) and timeout.after is None and "hold" in timeout.describe()
    assert isinstance(error, Error) and error.status == 500 and error.on is Stage.REQUEST
    assert isinstance(abort, Abort) and abort.how == "reset" and abort.on is Stage.REQUEST
    assert isinstance(rate, RateLimit) and rate.status == 429 and rate.per == 1.0
    assert [r.name for r in scenario.rules] == [
        "latency-1",
        "timeout-2",
        "error-3",
        "abort-4",
        "rate_limit-5",
    ]
    rule = scenario.rules[0]
    assert rule.probability == 1 and rule.skip == 0 and rule.every is None and rule.times is None
    assert rule.match.empty


def test_timeout_then_accepts_status_as_number_or_text() -> None:
    scenario = sc.load_text(
        "rules:\n  - fault: {type: timeout, after: 500ms, then: 504}\n"
        "  - fault: {type: timeout, after: 1s, then: '503'}\n  - fault: {type: timeout, after: 1s, then: reset}\n"
    )
    assert [r.fault[0].then for r in scenario.rules] == [504, 503, "reset"]


# The list of bad files: each is a non-zero exit with a located error naming the
# field and the bad value (the CLI side is in test_cli.py).
BAD = [
    ("rules: [\n  {fault: {type: error}\n", "s.yaml:3:1: syntax:"),
    (
        "rules:\n  - fault: {type: explode}\n",
        "s.yaml:2:19: rules[0].fault.type: unknown fault type 'explode'; valid: "
        + ", ".join(sorted(FAULT_TYPES)),
    ),
    (
        "rules:\n  - probability: 1.5\n    fault: {type: error}\n",
        "s.yaml:2:18: rules[0].probability: must be between 0 and 1, got 1.5",
    ),
    (
        "rules:\n  - fault: {type: error}\n    mach: {path: /x}\n",
        "s.yaml:3:5: rules[0].mach: unknown key 'mach' (did you mean 'match'?); valid keys: name, match",
    ),
    (
        "rules:\n  - fault: {type: error, status: 99}\n",
        "s.yaml:2:34: rules[0].fault.status: must be an HTTP status between 200 and 599, got 99",
    ),
    (
        "rules:\n  - fault: {type: latency, delay: soon}\n",
        "s.yaml:2:35: rules[0].fault.delay: 'soon' is not a duration",
    ),
    (
        "rules:\n  - fault: !!python/object/apply:os.system ['echo pwned']\n",
        "s.yaml:2:12: rules[0].fault: unsupported YAML tag !!python/object/apply:os.system",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_files_give_located_errors_naming_field_and_value(text: str, expected: str) -> None:
    lines = problems(text)
    assert any(line.startswith(expected) for line in lines), lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules:\n  - fault: {type: errr}\n", "(did you mean 'error'?)"),
        (
            "rules:\n  - fault: {type: latency, delay: 1s, jiter: 1s}\n",
            "unknown key 'jiter' (did you mean 'jitter'?)",
        ),
        (
            "rules:\n  - fault: {status: 500}\n",
            "rules[0].fault: missing 'type': say which fault type, one of abort",
        ),
        ("rules:\n  - {}\n", "rules[0]: missing required key 'fault'"),
        (
            "rules:\n  - fault: {type: latency}\n",
            "give one of delay (with optional jitter), distribution, or quantiles (p50, p95, p99...)",
        ),
        (
            "rules:\n  - fault: {type: latency, delay: 11m}\n",
            "delay of 11m is longer than 10m; set allow_long: true",
        ),
        ("rules:\n  - fault: {type: timeout, after: 1h}\n", "after of 1h is longer than 10m"),
        ("rules:\n  - fault: {type: timeout, then: 504}\n", "then needs after"),
        (
            "rules:\n  - fault: {type: timeout, after: 1s, then: 999}\n",
            "must be close, reset or an HTTP status (200-599), got 999",
        ),
        (
            "rules:\n  - fault: {type: error, body: x, json: {a: 1}}\n",
            "give body or json, not both",
        ),
        (
            "rules:\n  - fault: {type: abort, how: explode}\n",
            "rules[0].fault.how: must be 'reset' or 'close', got 'explode'",
        ),
        (
            "rules:\n  - fault: {type: latency, distribution: {kind: gamma}}\n",
            "unknown distribution kind 'gamma'; valid: lognormal, normal, uniform",
        ),
        (
            "rules:\n  - fault: {type: latency, distribution: {kind: lognormal, median: 1s, p99: 10ms}}\n",
            "p99 (10ms) must not be below the median (1s)",
        ),
        (
            "rules:\n  - fault: {type: rate_limit, limit: 0}\n",
            "rules[0].fault.limit: must be a whole number >= 1, got 0",
        ),
        ("rules:\n  - fault: {type: rate_limit, limit: 1, key: ip}\n", "key must be header:NAME"),
        (
            "rules:\n  - every: 0\n    fault: {type: error}\n",
            "rules[0].every: must be a whole number >= 1, got 0",
        ),
        (
            "rules:\n  - skip: -1\n    fault: {type: error}\n",
            "rules[0].skip: must be a whole number >= 0, got -1",
        ),
        (
            "rules:\n  - match: {path: 're:(['}\n    fault: {type: error}\n",
            "rules[0].match.path: invalid regular expression '(['",
        ),
        (
            "rules:\n  - match: {method: 'GET /'}\n    fault: {type: error}\n",
            "'GET /' is not an HTTP method",
        ),
        (
            "rules:\n  - match: {headers: {X-A: [1, 2]}}\n    fault: {type: error}\n",
            "rules[0].match.headers.X-A: must be a string",
        ),
        (
            "rules:\n  - {name: a, fault: {type: error}}\n  - {name: a, fault: {type: abort}}\n",
            "rules[1].name: duplicate rule name 'a' (also rules[0])",
        ),
        ("version: 2\n", "version: must be 1, got 2"),
        ("rules: []\nphases: [{name: a}]\n", "a scenario has either rules or phases, not both"),
        (
            "phases: [{name: a}, {name: b}]\n",
            "phases[0]: missing duration: every phase but the last needs one",
        ),
        ("phases: [{name: a, duration: 1s}]\nloop: true\n", "OK"),
        (
            "phases: [{name: a, duration: 1s}, {name: b}]\nloop: true\n",
            "phases[1]: missing duration: with loop: true every phase needs one",
        ),
        ("loop: true\n", "loop only applies to phases"),
        ("- a\n- b\n", "scenario: must be a mapping with rules or phases, got a list"),
        ("name: x\nname: y\n", "s.yaml:2:1: name: duplicate key 'name' (first at line 1)"),
    ],
)
def test_messages_a_user_can_act_on(text: str, expected: str) -> None:
    if expected == "OK":
        sc.load_text(text)
        return
    lines = problems(text)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("s.yaml") for line in lines)


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    lines = problems(
        "rules:\n"
        "  - probability: 2\n"
        "    fault: {type: error, status: 1000}\n"
        "  - fault: {type: nope}\n"
        "seed: many\n"
    )
    assert [line.split(":")[1] for line in lines] == ["2", "3", "4", "5"]


def test_match_values_from_json_become_their_text() -> None:
    scenario = sc.load_data(
        {
            "rules": [
                {
                    "match": {"query": {"page": 1, "debug": True}, "method": "get"},
                    "fault": {"type": "error"},
                }
            ]
        }
    )
    match = scenario.rules[0].match
    assert match.query == {"page": "1", "debug": "true"}
    assert match.method == ("GET",)


def test_load_data_reports_paths_without_lines() -> None:
    with pytest.raises(sc.ScenarioError) as err:
        sc.load_data({"rules": [{"fault": {"type": "error", "status": 42}}]}, "<request body>")
    assert err.value.lines == [
        "<request body>: rules[0].fault.status: must be an HTTP status between 200 and 599, got 42"
    ]


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(sc.ScenarioError, match="no such file"):
        sc.load_file(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(sc.ScenarioError, match="cannot read it"):
        sc.load_file(bad)


def test_find_suggests_a_shipped_name() -> None:
    with pytest.raises(sc.ScenarioError) as err:
        sc.find("outgae")
    assert "did you mean 'outage'?" in str(err.value)
    assert sc.find("outage").name == "outage.yaml"


# --------------------------------------------------------------------------- shipped + schema


SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_the_core_scenarios_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"healthy", "slow", "flaky", "outage", "blackhole", "slow-then-fail"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_are_valid_documented_and_schema_linked(path: Path) -> None:
    text = path.read_text()
    assert text.splitlines()[0] == sc.SCHEMA_LINE
    scenario = sc.load_file(path)
    assert scenario.name == path.stem
    assert len(scenario.description) > 20
    validate_json(yaml.safe_load(text), sc.json_schema())


def test_schema_file_is_what_chaosproxy_schema_prints() -> None:
    on_disk = json.loads((ROOT / "scenarios" / "schema.json").read_text())
    assert on_disk == sc.json_schema(), "run `make schema` to regenerate scenarios/schema.json"


@pytest.mark.parametrize(
    "doc",
    [
        {"rules": [{"fault": {"type": "explode"}}]},
        {"rules": [{"fault": {"type": "error", "status": 99}}]},
        {"rules": [{"probability": 1.5, "fault": {"type": "error"}}]},
        {"rules": [{"mach": {}, "fault": {"type": "error"}}]},
        {"rules": [{"fault": {"type": "latency", "delay": "soon"}}]},
    ],
)
def test_schema_rejects_what_the_validator_rejects(doc: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_json(doc, sc.json_schema())
    with pytest.raises(sc.ScenarioError):
        sc.load_data(doc)


def test_schema_accepts_single_faults_lists_and_durations_as_numbers() -> None:
    doc = {
        "rules": [
            {"fault": {"type": "latency", "delay": 0.25, "on": "response"}},
            {"fault": [{"type": "latency", "delay": "1s"}, {"type": "error", "status": 503}]},
            {
                "match": {"method": "GET"},
                "fault": {"type": "timeout", "after": "1s", "then": "504"},
            },
        ]
    }
    validate_json(doc, sc.json_schema())
    sc.load_data(doc)


def test_an_unknown_name_lists_your_scenarios_apart_from_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("rules: []\n")
    with pytest.raises(sc.ScenarioError) as err:
        sc.resolve("flakey", [tmp_path])
    message = str(err.value)
    assert f"{tmp_path}: mine; shipped: " in message
    shipped_part = message.split("shipped: ", 1)[1]
    assert "flaky" in shipped_part and "mine" not in shipped_part
