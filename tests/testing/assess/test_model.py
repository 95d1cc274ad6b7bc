"""The Assessment's JSON document: round trip, and the published schema accepts it."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from chaosproxy.testing.assess.model import (
    Assessment,
    Attempt,
    Backoff,
    Breaker,
    Evidence,
    ExperimentResult,
    Outcome,
    Policy,
    RetryAfter,
    Sample,
    Target,
    json_schema,
)
from tests.support import validate_json


def example() -> Assessment:
    return Assessment(
        started_at="2026-12-06T07:00:00Z",
        duration_s=41.2,
        seed=1,
        quick=False,
        target=Target(
            trigger="url",
            url="http://127.0.0.1:5000/weather/berlin",
            method="GET",
            upstream="http://127.0.0.1:5001",
            proxy_url="http://127.0.0.1:8080",
        ),
        policy=Policy(
            timeout_s=2.0,
            attempts=3,
            backoff=Backoff("exponential", 0.1, 2.0, None, False),
            retry_after=RetryAfter(True, None),
            retries_4xx=False,
            retries_on_reset=True,
            breaker=Breaker(5, 10.0, 1),
            fallback=True,
            malformed_is_failure=True,
            app_latency_budget_s=2.3,
        ),
        evidence={
            "attempts": Evidence(3, "high", ["fail_until_give_up"], "3,3,3"),
        },
        experiments=[
            ExperimentResult(
                name="fail_until_give_up",
                title="503 until the client gives up",
                scenario={"name": "x", "rules": []},
                samples=[
                    Sample(
                        0,
                        Outcome(status=503, duration_s=0.71, body_excerpt="..."),
                        [Attempt(0.0, "GET", "/v1/forecast/berlin", 503, "error 503", 0.002)],
                    )
                ],
                findings={"attempts": 3, "gaps_s": [0.1, 0.2]},
            )
        ],
    )


def test_round_trip_through_json_text() -> None:
    doc = example().to_json()
    again = Assessment.from_json(json.loads(json.dumps(doc)))
    assert again == example()
    assert again.to_json() == doc


def test_document_has_the_contract_keys() -> None:
    doc = example().to_json()
    assert doc["schema_version"] == 1
    assert doc["tool"]["name"] == "chaosproxy"
    assert doc["policy"]["backoff"] == {
        "kind": "exponential",
        "base_s": 0.1,
        "multiplier": 2.0,
        "cap_s": None,
        "jitter": False,
        "increment_s": None,
        "first_immediate": False,
    }
    assert doc["policy"]["breaker"] == {"opens_after": 5, "reset_s": 10.0, "half_open_probes": 1}
    assert doc["policy"]["retries_non_idempotent"] is None
    assert doc["evidence"]["attempts"]["confidence"] == "high"
    assert doc["experiments"][0]["samples"][0]["attempts"][0]["t_s"] == 0.0


def test_schema_accepts_the_document_and_an_empty_policy() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())
    validate_json(example().to_json(), json_schema())
    bare = Assessment(
        "2026-12-06T07:00:00Z", 1.0, 0, True, Target("command", "http://u", command=["x"])
    )
    validate_json(bare.to_json(), json_schema())


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("schema_version", 2),
        ("policy.backoff.kind", "fibonacci"),
        ("policy.attempts", 0),
        ("policy.breaker.opens_after", "five"),
        ("evidence.attempts.confidence", "certain"),
        ("target.trigger", "socket"),
        ("experiments.0.samples.0.attempts.0.t_s", "soon"),
    ],
)
def test_schema_rejects_a_wrong_value(path: str, value: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_json(_set(example().to_json(), path, value), json_schema())


def test_unknown_keys_are_ignored_and_a_wrong_version_refused() -> None:
    doc = _set(example().to_json(), "policy.new_item", 1)
    doc["extra"] = {"a": 1}
    assert Assessment.from_json(doc).policy.attempts == 3
    with pytest.raises(ValueError, match="schema_version 2"):
        Assessment.from_json(_set(doc, "schema_version", 2))
