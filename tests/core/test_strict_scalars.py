"""Booleans, numbers and text are told apart, as the JSON Schema tells them apart.

The corpus (test_schema_corpus.py) holds the invalid forms against both validate and the
schema; here: the located messages, and a guard that every number and boolean field of
every scenario model (fault types added later included) refuses the other kinds.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from chaosproxy.core import scenario as sc
from chaosproxy.core.fault import fault_types


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules: [{fault: {type: stream_cut, events: true}}]",
            "<string>:1:44: rules[0].fault.events: must be a whole number, not true or false, "
            "got true",
        ),
        (
            "rules: [{skip: '2', fault: {type: abort}}]",
            "<string>:1:16: rules[0].skip: must be a whole number, not text: write it without "
            "quotes, got '2'",
        ),
        (
            "rules: [{probability: '0.5', fault: {type: abort}}]",
            "<string>:1:23: rules[0].probability: must be a number, not text: write it without "
            "quotes, got '0.5'",
        ),
        (
            "annotate: yes\nrules: [{fault: {type: abort}}]",
            "<string>:1:11: annotate: must be true or false, got 'yes'",
        ),
        (
            "rules: [{fault: {type: latency, delay: 1s, allow_long: 1}}]",
            "<string>:1:56: rules[0].fault.allow_long: must be true or false, got 1",
        ),
    ],
)
def test_a_number_or_boolean_of_the_wrong_kind_is_refused_where_it_is(
    text: str, expected: str
) -> None:
    with pytest.raises(sc.ScenarioError) as err:
        sc.load_text(text)
    assert err.value.lines == [expected]


def test_numbers_stay_numbers_and_text_stays_where_a_field_reads_it() -> None:
    loaded = sc.load_text(
        "seed: 7\nrules:\n"
        "  - {skip: 1.0, fault: {type: timeout, after: 1, then: '504'}}\n"
        "  - {fault: {type: error, status: 503.0, json: {retry: true, n: 3}}}\n"
        "  - {fault: {type: stream_cut, events: 3.0}}\n"
    )
    first, second, third = loaded.rules
    assert first.skip == 1 and type(first.skip) is int
    assert second.fault[0].status == 503  # type: ignore[attr-defined]
    assert second.fault[0].json_ == {"retry": True, "n": 3}  # type: ignore[attr-defined]
    assert third.fault[0].events == 3  # type: ignore[attr-defined]


def _models() -> list[type[BaseModel]]:
    return [sc.Scenario, *fault_types().values()]


def _leaves(schema: Any, parent: Any = None) -> list[tuple[Any, Any]]:
    """Every (node, parent) of the schema whose kind is int, float or bool."""
    out: list[tuple[Any, Any]] = []
    if isinstance(schema, list):
        for item in schema:
            out += _leaves(item, parent)
    elif isinstance(schema, dict):
        if str(schema.get("ref", "")).startswith("pydantic.types.JsonValue"):
            return out  # a JSON body (error's json:) holds any JSON value, as written
        if schema.get("type") in ("int", "float", "bool"):
            out.append((schema, parent))
        for key, value in schema.items():
            if key not in ("metadata", "serialization"):
                out += _leaves(value, schema)
    return out


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_number_and_boolean_field_is_strict(model: type[BaseModel]) -> None:
    leaves = _leaves(model.__pydantic_core_schema__)
    for node, parent in leaves:
        if node["type"] == "bool":
            assert node.get("strict") is True, f"{model.__name__}: a lax bool field"
        else:
            assert parent is not None and parent.get("type") == "function-before", (
                f"{model.__name__}: a {node['type']} field takes booleans and text"
            )
            with pytest.raises(Exception, match="not true or false"):
                parent["function"]["function"](True)
            with pytest.raises(Exception, match="not text"):
                parent["function"]["function"]("3")
