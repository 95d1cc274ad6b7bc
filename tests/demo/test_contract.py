"""One JSON Schema of the weather API keeps the mocks honest: the fake upstream's real
answers and every canned body the unit tests use must agree with it, and so must the
client's own validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from chaosproxy.demo_app.upstream import create_upstream, forecast
from chaosproxy.demo_app.weather import InvalidForecast, validate_forecast
from tests.demo.canned import INVALID_JSON, VALID

SCHEMA = json.loads((Path(__file__).parent / "weather_schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def matches(doc: Any) -> bool:
    return VALIDATOR.is_valid(doc)


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.wire
@pytest.mark.parametrize("city", ["berlin", "paris", "tokyo", "lima", "oslo", "nairobi"])
def test_the_fake_upstream_answers_match_the_schema_on_the_wire(
    fake_upstream: str, city: str
) -> None:
    response = requests.get(f"{fake_upstream}/v1/forecast/{city}", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    VALIDATOR.validate(response.json())


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"\A[a-z][a-z-]{0,39}\Z"))
def test_every_city_forecast_matches_the_schema(city: str) -> None:
    client = create_upstream().test_client()
    response = client.get(f"/v1/forecast/{city}")
    assert response.status_code == 200
    VALIDATOR.validate(response.get_json())
    assert validate_forecast(response.get_json())


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_canned_valid_body_matches_the_schema(name: str) -> None:
    VALIDATOR.validate(VALID[name])
    assert validate_forecast(VALID[name]) == VALID[name]


@pytest.mark.parametrize("name", sorted(INVALID_JSON))
def test_every_canned_invalid_body_breaks_the_schema_and_the_client_refuses_it(name: str) -> None:
    assert not matches(INVALID_JSON[name]), f"{name} is meant to break the contract"
    with pytest.raises(InvalidForecast):
        validate_forecast(INVALID_JSON[name])


def test_fake_upstream_is_deterministic() -> None:
    assert forecast("berlin") == forecast("berlin")
    assert forecast("berlin") != forecast("paris")
