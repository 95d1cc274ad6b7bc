"""The demo app's routes, through Flask's test client, with the upstream and the proxy's
control API answered by ``responses``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from tests.demo.canned import BERLIN, INVALID_JSON, PARIS
from tests.demo.conftest import ADMIN, UPSTREAM, demo
from tests.support import wait_until

BERLIN_URL = f"{UPSTREAM}/v1/forecast/berlin"


def test_weather_from_the_upstream(client: FlaskClient, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, BERLIN_URL, json=BERLIN)
    answer = client.get("/weather/Berlin")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["source"] == "upstream" and body["outcome"] == "ok"
    assert body["forecast"] == BERLIN
    assert "age_s" not in body


def test_fallback_is_marked_cache_with_its_age(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    mocked.add(responses.GET, BERLIN_URL, json=BERLIN)
    with mock.patch("chaosproxy.demo_app.weather.time.monotonic", return_value=1000.0):
        assert client.get("/weather/berlin").get_json()["source"] == "upstream"
    mocked.replace(responses.GET, BERLIN_URL, status=503, json={"error": "down"})
    with mock.patch("chaosproxy.demo_app.weather.time.monotonic", return_value=1042.5):
        answer = client.get("/weather/berlin")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["source"] == "cache" and body["outcome"] == "fallback"
    assert body["age_s"] == 42.5
    assert body["forecast"] == BERLIN
    assert body["reason"] == "upstream answered 503"


def test_nothing_cached_is_a_503_json(client: FlaskClient, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, BERLIN_URL, body=requests.ConnectionError("refused"))
    answer = client.get("/weather/berlin")
    assert answer.status_code == 503
    assert answer.is_json
    body = answer.get_json()
    assert body["error"] == "weather service unavailable and nothing cached"
    assert body["attempts"] == 3


@pytest.mark.parametrize("name", sorted(INVALID_JSON))
def test_invalid_upstream_data_is_never_a_500_nor_passed_on(
    client: FlaskClient, mocked: responses.RequestsMock, name: str
) -> None:
    mocked.add(responses.GET, BERLIN_URL, json=INVALID_JSON[name])
    answer = client.get("/weather/berlin")
    assert answer.status_code == 503
    assert "forecast" in answer.get_json()["reason"]


def test_wrong_content_type_is_never_a_500(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    mocked.add(
        responses.GET, BERLIN_URL, body="<h1>oops</h1>", status=200, content_type="text/html"
    )
    answer = client.get("/weather/berlin")
    assert answer.status_code == 503
    assert "text/html" in answer.get_json()["reason"]


def test_unknown_city_is_a_404(client: FlaskClient, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, f"{UPSTREAM}/v1/forecast/atlantis", status=404, json={"error": "?"})
    answer = client.get("/weather/atlantis")
    assert answer.status_code == 404
    assert answer.get_json()["error"] == "unknown city"


def test_status_shape(client: FlaskClient, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, BERLIN_URL, json=BERLIN)
    mocked.add(
        responses.GET,
        f"{ADMIN}/scenario",
        json={
            "name": "storm",
            "description": "d",
            "phase": "outage",
            "seed": 3,
            "phases": [{"name": "calm", "duration": 10}, {"name": "outage", "duration": 20}],
        },
    )
    client.get("/weather/berlin")
    status = client.get("/status").get_json()
    assert status["breaker"]["state"] == "closed"
    assert status["breaker"]["fail_counter"] == 0
    assert status["breaker"]["fail_max"] == 5 and status["breaker"]["reset_timeout"] == 10
    assert status["proxy"] == {
        "admin_url": ADMIN,
        "reachable": True,
        "scenario": "storm",
        "description": "d",
        "phase": "outage",
        "phases": ["calm", "outage"],
        "paused": None,
        "error": None,
    }
    assert status["totals"] == {"ok": 1, "ok_retry": 0, "fallback": 0, "error": 0}
    assert status["latency"]["count"] == 1 and status["latency"]["p50_ms"] >= 0
    assert len(status["series"]) == 60
    assert status["settings"]["retries"] is True
    assert status["traffic"]["running"] is False


def test_status_when_the_proxy_is_unreachable(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    mocked.add(responses.GET, f"{ADMIN}/scenario", body=requests.ConnectionError("refused"))
    proxy = client.get("/status").get_json()["proxy"]
    assert proxy["reachable"] is False
    assert "unreachable" in proxy["error"]


def test_breaker_trips_and_shows_in_status(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    mocked.add(responses.GET, BERLIN_URL, status=502, json={"error": "bad gateway"})
    mocked.add(responses.GET, f"{ADMIN}/scenario", json={"name": "outage"})
    for _ in range(2):
        client.get("/weather/berlin")  # 3 + 2 failed attempts: the fifth opens it
    breaker = client.get("/status").get_json()["breaker"]
    assert breaker["state"] == "open"
    assert [(t["from"], t["to"]) for t in breaker["transitions"]] == [("closed", "open")]
    calls = len(mocked.calls)
    assert client.get("/weather/berlin").status_code == 503
    assert len(mocked.calls) == calls  # open: the upstream is not called


def test_settings_toggle_the_protections(app: Flask, client: FlaskClient) -> None:
    answer = client.post(
        "/settings",
        json={
            "retries": False,
            "breaker": False,
            "timeouts": False,
            "read_timeout": 3,
            "fail_max": 2,
        },
    )
    assert answer.status_code == 200
    settings = demo(app).client.settings
    assert (settings.retries, settings.breaker, settings.timeouts) == (False, False, False)
    assert settings.read_timeout == 3.0
    assert demo(app).client.breaker.fail_max == 2
    assert answer.get_json()["breaker"]["fail_max"] == 2


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"retries": "yes"}, "settings.retries: must be true or false"),
        ({"read_timeout": 0}, "settings.read_timeout: must be between 0.01 and 300"),
        ({"max_attempts": 2.5}, "settings.max_attempts: must be a whole number"),
        ({"fail_max": True}, "settings.fail_max: must be a number"),
        ({"colour": "red"}, "settings.colour: unknown setting"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    app: Flask, client: FlaskClient, body: dict[str, object], problem: str
) -> None:
    before = demo(app).client.settings.as_dict()
    answer = client.post("/settings", json={"breaker": False, **body})
    assert answer.status_code == 400
    assert any(p.startswith(problem) for p in answer.get_json()["problems"]), answer.get_json()
    assert demo(app).client.settings.as_dict() == before


def test_non_json_bodies_are_400(client: FlaskClient) -> None:
    for path in ("/settings", "/traffic"):
        answer = client.post(path, data="x", content_type="text/plain")
        assert answer.status_code == 400
        assert answer.get_json() == {"error": "the body must be a JSON object"}


def test_traffic_runs_server_side_and_stops(
    make_app: Callable[..., Flask], mocked: responses.RequestsMock
) -> None:
    mocked.add(responses.GET, re.compile(rf"{UPSTREAM}/v1/forecast/\w+"), json=PARIS)
    app = make_app(TRAFFIC_CITIES=["paris"])
    client = app.test_client()
    answer = client.post("/traffic", json={"running": True, "rate": 50})
    assert answer.get_json()["running"] is True
    wait_until(lambda: demo(app).metrics.totals["ok"] >= 10, timeout=20)
    stopped = client.post("/traffic", json={"running": False}).get_json()
    assert stopped["running"] is False and stopped["rate"] == 50
    sent = stopped["sent"]
    assert client.get("/status").get_json()["traffic"]["sent"] == sent  # nothing more is sent


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"rate": 0}, "traffic.rate: rate must be above 0"),
        ({"rate": "fast"}, "traffic.rate: must be a number"),
        ({"running": "yes"}, "traffic.running: must be true or false"),
    ],
)
def test_bad_traffic_requests(client: FlaskClient, body: dict[str, object], error: str) -> None:
    answer = client.post("/traffic", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith(error)


def test_scenario_picker_goes_through_the_control_api(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    listing = [{"name": "healthy", "description": "calm"}, {"name": "outage", "description": "x"}]
    mocked.add(responses.GET, f"{ADMIN}/scenarios", json=listing)
    put = mocked.add(responses.PUT, f"{ADMIN}/scenario", json={"name": "outage"})
    assert client.get("/proxy/scenarios").get_json() == listing
    answer = client.put("/proxy/scenario", json={"name": "outage"})
    assert answer.status_code == 200
    assert json.loads(put.calls[0].request.body) == {"name": "outage"}


def test_scenario_errors_are_passed_back(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    problems = {"error": "unknown scenario", "problems": ["<name>: no shipped scenario 'nope'"]}
    mocked.add(responses.PUT, f"{ADMIN}/scenario", status=400, json=problems)
    answer = client.put("/proxy/scenario", json={"name": "nope"})
    assert answer.status_code == 400 and answer.get_json() == problems
    assert client.put("/proxy/scenario", json={}).status_code == 400


def test_phase_jump_goes_through_the_control_api(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    post = mocked.add(responses.POST, f"{ADMIN}/scenario/phase", json={"phase": "outage"})
    answer = client.post("/proxy/phase", json={"phase": "outage"})
    assert answer.status_code == 200
    assert json.loads(post.calls[0].request.body) == {"phase": "outage"}
    assert client.post("/proxy/phase", json={"phase": ""}).status_code == 400


def test_proxy_unreachable_is_a_502(client: FlaskClient, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.PUT, f"{ADMIN}/scenario", body=requests.ConnectionError("refused"))
    answer = client.put("/proxy/scenario", json={"name": "outage"})
    assert answer.status_code == 502
    assert "unreachable" in answer.get_json()["error"]


def test_reset_closes_the_breaker_and_zeroes_counters(
    app: Flask, client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    mocked.add(responses.GET, BERLIN_URL, status=500)
    for _ in range(2):
        client.get("/weather/berlin")
    assert demo(app).client.breaker.current_state == "open"
    assert client.get("/status").get_json()["breaker"]["transitions"]
    traffic = demo(app).traffic
    traffic.sent, traffic.skipped = 12, 3  # as the ticker counts them
    answer = client.post("/reset", json={}).get_json()
    assert answer["state"] == "closed"
    assert answer["transitions"] == []  # not even the open -> closed of the reset itself
    assert demo(app).metrics.totals["error"] == 0
    status = client.get("/status").get_json()
    assert status["breaker"]["transitions"] == []
    assert (status["traffic"]["sent"], status["traffic"]["skipped"]) == (0, 0)


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from chaosproxy.demo_app import create_app

    monkeypatch.setenv("DEMO_UPSTREAM_URL", "http://proxy:8080")
    monkeypatch.setenv("DEMO_PROXY_ADMIN_URL", "http://proxy:8475")
    monkeypatch.setenv("DEMO_BREAKER_FAIL_MAX", "7")
    app = create_app()
    assert demo(app).client.base_url == "http://proxy:8080"
    assert demo(app).proxy.admin_url == "http://proxy:8475"
    assert demo(app).client.breaker.fail_max == 7


def test_dashboard_is_served_whole_by_the_app(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    static = Path(__file__).parents[2] / "demo_app" / "dashboard" / "static"
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        answer.close()
    served = [p for p in static.rglob("*") if p.suffix in (".js", ".css", ".html", ".svg")]
    assert static / "vendor" / "chart.umd.min.js" in served
    for path in served:
        # a vendored file names its home page in its licence header only
        text = re.sub(r"/\*!.*?\*/", "", path.read_text(), flags=re.S)
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), (
            f"{path.name} reaches out"
        )
        assert "@import" not in text and "@font-face" not in text


def test_the_vendored_chart_library_ships_with_its_licences() -> None:
    vendor = Path(__file__).parents[2] / "demo_app" / "dashboard" / "static" / "vendor"
    assert (vendor / "chart.umd.min.js").read_text().startswith("/*!\n * Chart.js v4.")
    for licence in ("chart.js-LICENSE.md", "kurkle-color-LICENSE.md"):
        assert "MIT License" in (vendor / licence).read_text()
