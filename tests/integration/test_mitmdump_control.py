"""The control API, hot reload and decision log inside plain mitmdump (``--set chaos_*``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import requests

from tests.integration.test_mitmdump_script import MITMDUMP, SCRIPT
from tests.support import UpstreamServer, free_port, wait_until


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_mitmdump_serves_the_control_api_and_writes_decisions(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "rules: [{name: down, match: {path: /down}, fault: {type: error, status: 503}}]\n"
    )
    log = tmp_path / "decisions.jsonl"
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [MITMDUMP, "-s", SCRIPT, "--mode", f"reverse:{upstream.url}", "-p", str(port),
         "--set", f"confdir={tmp_path}", "--set", f"chaos_scenario={scenario}",
         "--set", f"chaos_admin=127.0.0.1:{admin}", "--set", "chaos_watch=true",
         "--set", f"chaos_decision_log={log}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{admin}"
    try:
        wait_until(lambda: answers(f"{api}/healthz"), timeout=30, interval=0.2)
        assert requests.get(f"http://127.0.0.1:{port}/down").status_code == 503
        scenario.write_text("rules: [{name: tea, fault: {type: error, status: 418}}]\n")
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/down").status_code == 418, timeout=10
        )
        r = requests.put(f"{api}/scenario", data='{"name": "healthy"}')
        assert r.status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/down").status_code == 200
        assert requests.get(f"{api}/stats").json()["scenario"] == "healthy"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "Traceback" not in out, out[out.find("Traceback") - 600 :]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["rule"] == "down" and records[-1]["rule"] is None
    assert {r["status"] for r in records} == {503, 418, 200}


def test_mitmdump_refuses_a_control_api_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    out = subprocess.run(
        [MITMDUMP, "-s", SCRIPT, "-p", str(free_port()), "--set", f"confdir={tmp_path}",
         "--set", f"chaos_admin=0.0.0.0:{free_port()}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "admin-token" in out.stdout + out.stderr
