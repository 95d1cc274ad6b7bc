"""The addon inside plain mitmproxy: `mitmdump -s proxy_addons/chaos.py`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support import UpstreamServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
SCRIPT = str(ROOT / "proxy_addons" / "chaos.py")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_mitmdump(upstream_url: str, port: int, confdir: Path, *options: str) -> subprocess.Popen:
    """``mitmdump -s chaos.py`` as a reverse proxy; ``options`` are ``NAME=VALUE`` for --set."""
    sets = [arg for option in options for arg in ("--set", option)]
    return subprocess.Popen(
        [MITMDUMP, "-s", SCRIPT, *sets, "--mode", f"reverse:{upstream_url}", "-p", str(port)]
        + ["--set", f"confdir={confdir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_mitmdump_loads_the_addon_and_injects(upstream: UpstreamServer, tmp_path: Path) -> None:
    port = free_port()
    proc = start_mitmdump(upstream.url, port, tmp_path, "chaos_scenario=flaky", "chaos_seed=3")
    try:

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/echo", timeout=2).status_code in (
                    200,
                    503,
                )
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=30, interval=0.2)
        statuses = [requests.get(f"http://127.0.0.1:{port}/x").status_code for _ in range(30)]
        assert set(statuses) == {200, 503}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "scenario flaky applied (seed 3" in out
    assert "injected unavailable [error 503]" in out


def test_mitmdump_refuses_a_bad_scenario_with_located_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - fault: {type: error, status: 99}\n")
    out = subprocess.run(
        [
            MITMDUMP,
            "-s",
            SCRIPT,
            "--set",
            f"chaos_scenario={bad}",
            "-p",
            str(free_port()),
            "--set",
            f"confdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert (
        f"{bad}:2:34: rules[0].fault.status: must be an HTTP status between 200 and 599, got 99"
        in text
    )
    assert "Traceback" not in text


def test_mitmdump_chaos_upstream_timeout_answers_504(tmp_path: Path) -> None:
    from tests.reliability.rawwire import Blackhole

    port = free_port()
    with Blackhole() as up:
        proc = start_mitmdump(up.url, port, tmp_path, "chaos_upstream_timeout=read=0.5s")
        try:
            wait_until(lambda: listening(port), timeout=30, interval=0.2)
            started = time.monotonic()
            answer = requests.get(f"http://127.0.0.1:{port}/x", timeout=10)
            assert answer.status_code == 504
            assert answer.json()["upstream"] == f"127.0.0.1:{up.port} did not answer within 0.5s"
            assert time.monotonic() - started < 3
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
