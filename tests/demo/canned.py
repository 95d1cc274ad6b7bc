"""Canned weather bodies for the unit tests. test_contract.py checks every one of them
against weather_schema.json, so a mock cannot drift from the service it stands for."""

from __future__ import annotations

from typing import Any

BERLIN: dict[str, Any] = {
    "city": "berlin",
    "units": "metric",
    "current": {"temp_c": 12.5, "conditions": "rain", "wind_kph": 14, "humidity": 80},
    "daily": [
        {"date": "2026-01-01", "min_c": 8, "max_c": 14, "conditions": "rain"},
        {"date": "2026-01-02", "min_c": 7, "max_c": 12.5, "conditions": "cloudy"},
    ],
}
PARIS: dict[str, Any] = {
    "city": "paris",
    "current": {"temp_c": 17, "conditions": "sunny"},
    "daily": [],
}

#: valid bodies (match the schema): what a healthy upstream answers
VALID: dict[str, dict[str, Any]] = {"berlin": BERLIN, "paris": PARIS}

#: JSON bodies that do not match the schema (the client must refuse them)
INVALID_JSON: dict[str, Any] = {
    "not-an-object": ["berlin", 12.5],
    "no-current": {"city": "berlin", "daily": []},
    "temp-as-string": {**BERLIN, "current": {"temp_c": "12.5", "conditions": "rain"}},
    "temp-null": {**BERLIN, "current": {"temp_c": None, "conditions": "rain"}},
    "daily-not-list": {**BERLIN, "daily": {"date": "2026-01-01"}},
    "daily-missing-max": {
        **BERLIN,
        "daily": [{"date": "2026-01-01", "min_c": 1, "conditions": "fog"}],
    },
    "empty-city": {**BERLIN, "city": ""},
}
