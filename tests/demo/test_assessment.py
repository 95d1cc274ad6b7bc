"""The dashboard's assessment: ``POST /assessment`` runs the assess command as a
subprocess (here a stand-in that writes what ``chaosproxy assess --quick`` writes), one
at a time; ``GET /assessment`` shows its output as it comes and the last report card;
``/assess/weather/<city>`` is a copy of the app's client, kept off the dashboard's charts.
The real command, clicked in Chromium, is in test_browser.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import responses
from flask import Flask

from chaosproxy.demo_app.assessment import Assessments
from tests.demo.canned import BERLIN
from tests.demo.conftest import UPSTREAM, demo
from tests.support import wait_until

#: stands in for `chaosproxy assess`: prints progress and a card, writes --json and --html,
#: waits for RELEASE to exist, and exits with the code in EXIT (default 0)
STAND_IN = """
import json, os, pathlib, sys, time
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]
print("- baseline: No fault (2 samples)", flush=True)
release = pathlib.Path(os.environ["RELEASE"])
while not release.exists():
    time.sleep(0.01)
print("chaosproxy assess  GET", value("--trigger-url"), "-> upstream", value("--upstream"))
print("argv", " ".join(args))
pathlib.Path(value("--json")).write_text(json.dumps({"schema_version": 1}))
pathlib.Path(value("--html")).write_text("<!doctype html><title>report</title>")
sys.exit(int(os.environ.get("EXIT", "0")))
"""


def stand_in(tmp_path: Path, monkeypatch, exit_code: int = 0) -> tuple[Assessments, Path]:
    script = tmp_path / "fake_assess.py"
    script.write_text(STAND_IN)
    release = tmp_path / "release"
    monkeypatch.setenv("RELEASE", str(release))
    monkeypatch.setenv("EXIT", str(exit_code))
    runs = Assessments(
        "http://127.0.0.1:5001",
        command=(sys.executable, str(script)),
        workdir=tmp_path,
        port=lambda: 47001,
    )
    return runs, release


def test_a_run_shows_its_output_as_it_comes_then_the_card_and_report(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch
) -> None:
    app = make_app()
    state = demo(app)
    state.assessments, release = stand_in(tmp_path, monkeypatch)
    web = app.test_client()
    assert web.get("/assessment").get_json()["state"] == "idle"
    assert web.get("/assessment/report.html").status_code == 404

    started = web.post("/assessment", json={})
    assert started.status_code == 202, started.get_json()
    assert started.get_json()["state"] == "running"
    wait_until(lambda: "baseline" in web.get("/assessment").get_json()["output"], timeout=20)
    again = web.post("/assessment", json={})
    assert again.status_code == 409
    assert again.get_json()["error"] == "an assessment is already running"

    release.touch()
    done = wait_until(
        lambda: (s := web.get("/assessment").get_json())["state"] == "done" and s, timeout=20
    )
    assert done["exit_code"] == 0 and done["report"] is True
    assert done["finished"] >= done["started"]
    lines = done["output"].splitlines()
    assert lines[0] == "- baseline: No fault (2 samples)"
    # the app's own assessment route behind the proxy on the port it chose
    assert lines[1] == (
        "chaosproxy assess  GET http://localhost/assess/weather/berlin "
        "-> upstream http://127.0.0.1:5001"
    )
    argv = lines[2].split()
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:47001"
    assert "--quick" in argv and argv[argv.index("--seed") + 1] == "1"
    report = web.get("/assessment/report.html")
    assert report.status_code == 200 and report.mimetype == "text/html"
    assert b"<title>report</title>" in report.data
    target = state.assessments.target
    assert target is not None and target.base_url == "http://127.0.0.1:47001"
    assert target.settings == state.client.settings and target.settings is not state.client.settings
    assert target.breaker is not state.client.breaker


def test_a_failed_run_says_so_and_keeps_no_report(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch
) -> None:
    app = make_app()
    demo(app).assessments, release = stand_in(tmp_path, monkeypatch, exit_code=1)
    release.touch()
    web = app.test_client()
    assert web.post("/assessment", json={}).status_code == 202
    failed = wait_until(
        lambda: (s := web.get("/assessment").get_json())["state"] != "running" and s, timeout=20
    )
    assert failed["state"] == "failed" and failed["exit_code"] == 1
    assert failed["report"] is False
    assert web.get("/assessment/report.html").status_code == 404


def test_without_the_real_upstream_the_button_explains(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    web = app.test_client()
    assert web.get("/assessment").get_json()["enabled"] is False
    refused = web.post("/assessment", json={})
    assert refused.status_code == 503
    assert "chaosproxy demo" in refused.get_json()["error"]
    assert web.get("/assess/weather/berlin").status_code == 404
    assert demo(app).assessments.workdir is None  # no folder made for a run never started


def test_the_assessed_client_is_kept_off_the_dashboard(
    make_app: Callable[..., Flask], mocked: responses.RequestsMock
) -> None:
    from chaosproxy.demo_app.weather import WeatherClient

    app = make_app(ASSESS_UPSTREAM_URL="http://127.0.0.1:5001")
    state = demo(app)
    assert state.assessments.upstream_url == "http://127.0.0.1:5001"
    state.assessments.target = WeatherClient(UPSTREAM)
    mocked.add(responses.GET, f"{UPSTREAM}/v1/forecast/berlin", json=BERLIN)
    answer = app.test_client().get("/assess/weather/Berlin")
    assert answer.status_code == 200 and answer.get_json()["forecast"] == BERLIN
    assert state.metrics.snapshot()["totals"]["ok"] == 0
    assert state.client.cached_cities() == 0 and state.assessments.target.cached_cities() == 1
