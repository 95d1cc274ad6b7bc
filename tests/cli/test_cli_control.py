"""``chaosproxy run`` with the control API, --watch and --decision-log; ``chaosproxy stats``."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from chaosproxy.proxy_addons.runner import StartupError
from chaosproxy.testing.api import ChaosProxy
from tests.cli.test_cli import EXE, cli, listening, start, write
from tests.support import UpstreamServer, free_port, wait_until


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


def status(url: str) -> int:
    return requests.get(url, timeout=10).status_code


def test_watch_put_stats_and_decision_log(tmp_path: Path, upstream: UpstreamServer) -> None:
    scenario = write(
        tmp_path, "s.yaml", "seed: 1\nrules: [{name: first, fault: {type: error, status: 503}}]\n"
    )
    log_path = tmp_path / "decisions.jsonl"
    port, admin = free_port(), free_port()
    proc = start(
        "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}", "--scenario", scenario,
        "--admin", f"127.0.0.1:{admin}", "--watch", "--decision-log", str(log_path),
    )  # fmt: skip
    base, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    try:
        wait_until(lambda: listening(admin) and listening(port), timeout=15)
        assert requests.get(f"{api}/healthz").status_code == 200
        assert status(f"{base}/x") == 503
        # an edit applies within a second or so
        Path(scenario).write_text("rules: [{name: second, fault: {type: error, status: 418}}]\n")
        wait_until(lambda: status(f"{base}/x") == 418, timeout=5, interval=0.05)
        # a broken edit is reported and the running scenario keeps acting
        Path(scenario).write_text("rules: [{name: broken, fault: {type: error, status: 99}}]\n")
        wait_until(lambda: "changed but is invalid" in log_so_far(proc), timeout=5)
        assert status(f"{base}/x") == 418
        # a PUT changes it too
        r = requests.put(f"{api}/scenario", data='{"name": "healthy"}')
        assert r.status_code == 200
        assert status(f"{base}/echo") == 200
        out = cli("stats", "--admin", f"127.0.0.1:{admin}", "--decisions", "2")
        assert out.returncode == 0, out.stderr
        assert "healthy" in out.stdout and "last 2 requests" in out.stdout
        raw = json.loads(cli("stats", "--admin", api, "--json").stdout)
        assert raw["stats"]["scenario"] == "healthy" and raw["decisions"][-1]["status"] == 200
    finally:
        rest = stop(proc)
        log = _drained.pop(id(proc), "") + rest
    first = log.splitlines()[0]
    assert f"control API http://127.0.0.1:{admin}" in first and f"watching {scenario}" in first
    assert f"{scenario}:1:53: rules[0].fault.status: must be an HTTP status" in log
    assert "Traceback" not in log
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    phases = [(r["rule"], r["status"]) for r in records]
    phases = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    assert phases == [("first", 503), ("second", 418), (None, 200)]


_drained: dict[int, str] = {}


def log_so_far(proc: subprocess.Popen[str]) -> str:
    """Read what the process logged so far without blocking (its stdout is a pipe)."""
    import os
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data.decode())
    _drained[id(proc)] = _drained.get(id(proc), "") + "".join(chunks)
    return _drained[id(proc)]


def test_non_loopback_admin_without_a_token_refuses_to_start(upstream: UpstreamServer) -> None:
    port = free_port()
    out = subprocess.run(
        [EXE, "run", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
         "--admin", f"0.0.0.0:{free_port()}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--admin-token" in out.stderr and "Traceback" not in out.stderr
    assert not listening(port)


def test_an_explicit_admin_address_in_use_stops_the_proxy(upstream: UpstreamServer) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        admin = busy.getsockname()[1]
        port = free_port()
        out = subprocess.run(
            [EXE, "run", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
             "--admin", f"127.0.0.1:{admin}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert out.returncode == 1
    assert "cannot start the control API" in out.stderr and "Traceback" not in out.stderr
    assert not listening(port)


def test_the_default_admin_address_in_use_only_warns(upstream: UpstreamServer, caplog) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = busy.getsockname()
        proxy = ChaosProxy(upstream=upstream.url, admin=address)
        with pytest.raises(StartupError, match="cannot start the control API"):
            proxy.start()
        proxy.stop()
        quiet = ChaosProxy(upstream=upstream.url, admin=address)
        quiet.addon.control.required = False  # what `run` does for the default address
        with caplog.at_level(logging.WARNING, logger="chaosproxy"), quiet:
            assert quiet.admin_url is None
            assert status(f"{quiet.url}/echo") == 200
    assert "running without it" in caplog.text


def test_token_via_environment_and_stats_with_it(upstream: UpstreamServer) -> None:
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [EXE, "run", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
         "--admin", f"127.0.0.1:{admin}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**__import__("os").environ, "CHAOSPROXY_ADMIN_TOKEN": "tok"},
    )  # fmt: skip
    try:
        wait_until(lambda: listening(admin), timeout=15)
        assert requests.get(f"http://127.0.0.1:{admin}/stats").status_code == 401
        out = cli("stats", "--admin", f"127.0.0.1:{admin}")
        assert out.returncode == 1 and "401" in out.stderr
        out = cli("stats", "--admin", f"127.0.0.1:{admin}", "--admin-token", "tok")
        assert out.returncode == 0 and "passthrough" in out.stdout
    finally:
        stop(proc)


def test_stats_without_a_running_proxy_says_so() -> None:
    out = cli("stats", "--admin", f"127.0.0.1:{free_port()}")
    assert out.returncode == 1
    assert "cannot reach the control API" in out.stderr and "Traceback" not in out.stderr


def test_watch_needs_a_scenario_file(upstream: UpstreamServer) -> None:
    out = cli("run", "--upstream", upstream.url, "--watch", "--admin", "off")
    assert out.returncode == 2 and "--watch needs --scenario" in out.stderr


def test_json_log_lines_carry_the_injection_as_fields(upstream: UpstreamServer) -> None:
    port = free_port()
    proc = start(
        "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}", "--scenario", "outage",
        "--log-format", "json",
    )  # fmt: skip
    try:
        wait_until(lambda: listening(port), timeout=15)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/x")
    finally:
        out = stop(proc)
    lines = [json.loads(line) for line in out.splitlines()]
    injected = [line for line in lines if line.get("event") == "injected"]
    assert injected and injected[0]["rule"] == "connection-reset"
    assert injected[0]["fault"] == "abort reset" and injected[0]["method"] == "GET"
    assert injected[0]["url"] == f"{upstream.url}/v1/x"
