"""The fake weather service."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from chaosproxy.demo_app.upstream import create_upstream
from tests.support import free_port, wait_until


def test_forecast_and_healthz() -> None:
    client = create_upstream().test_client()
    answer = client.get("/v1/forecast/Berlin")
    assert answer.status_code == 200
    doc = answer.get_json()
    assert doc["city"] == "berlin"
    assert len(doc["daily"]) == 5
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_unknown_city_is_a_json_404() -> None:
    answer = create_upstream().test_client().get("/v1/forecast/no_such_place!")
    assert answer.status_code == 404
    assert answer.get_json()["error"] == "unknown city"


@pytest.mark.e2e
def test_runs_as_a_quiet_fast_process() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaosproxy.demo_app.upstream", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=20)
        with requests.Session() as session:
            started = time.perf_counter()
            for _ in range(50):
                assert session.get(f"{url}/v1/forecast/oslo", timeout=5).status_code == 200
            per_call = (time.perf_counter() - started) / 50
        assert per_call < 0.2  # generous: a few ms on an idle machine
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0  # SIGTERM is a clean stop
    assert out.strip() == f"fake weather upstream on http://127.0.0.1:{port}"
    assert err == ""  # no line per request
