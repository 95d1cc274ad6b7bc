"""``chaosproxy run --workers N``: processes sharing the port, one engine, the same decisions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.support import UpstreamServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]

SEEDED = """
name: seeded
seed: 11
rules:
  - {name: half, match: {path: /a}, probability: 0.5, fault: {type: error, status: 503}}
  - {name: third, match: {path: /b}, skip: 1, every: 3, fault: {type: error, status: 500}}
  - {name: twice, match: {path: /c}, times: 2, fault: {type: error, status: 502}}
  - {name: limited, match: {path: /d}, fault: {type: rate_limit, limit: 2, per: 60s}}
"""
#: each on a fresh connection, so the kernel spreads them over the workers
PATHS = [f"/{p}" for p in "abcdeabcdeaabbccddeeabcdabcdaaaabbbbccddee"]


class Proxy:
    def __init__(self, proc: subprocess.Popen[str], port: int, admin: int) -> None:
        self.proc, self.url, self.api = (
            proc,
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{admin}",
        )

    def status(self, path: str, **headers: str) -> int:
        headers.setdefault("Connection", "close")
        return requests.get(self.url + path, headers=headers, timeout=10).status_code

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.api}/stats", timeout=10).json()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return out


def _ready(proxy: Proxy) -> bool:
    if proxy.proc.poll() is not None:
        raise AssertionError(f"the proxy exited: {proxy.proc.communicate()[0]}")
    try:  # the control API answers once every worker listens
        healthy = requests.get(f"{proxy.api}/healthz", timeout=10).status_code == 200
        return healthy and proxy.status("/ready-probe-that-no-rule-matches") == 200
    except requests.ConnectionError:
        return False


@contextmanager
def running(upstream: UpstreamServer, scenario: Path, workers: int) -> Iterator[Proxy]:
    port, admin = free_port(), free_port()
    cmd = [
        sys.executable, "-m", "chaosproxy.cli", "run", "--upstream", upstream.url,
        "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
        "--scenario", str(scenario), "--workers", str(workers),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    proxy = Proxy(proc, port, admin)
    try:
        wait_until(lambda: _ready(proxy), timeout=30, interval=0.05)
        yield proxy
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def _decisions(upstream: UpstreamServer, path: Path, workers: int) -> tuple[list[int], Any, str]:
    with running(upstream, path, workers) as proxy:
        statuses = [proxy.status(p) for p in PATHS]
        # passthrough requests are reported in batches: wait for the count to settle
        wait_until(lambda: proxy.stats()["requests"] == len(PATHS) + 1, timeout=10)
        rules = proxy.stats()["rules"]
        return statuses, rules, proxy.stop()


def test_a_seeded_scenario_decides_the_same_at_one_and_two_workers(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    path = tmp_path / "seeded.yaml"
    path.write_text(SEEDED)
    one, one_rules, _ = _decisions(upstream, path, 1)
    two, two_rules, out = _decisions(upstream, path, 2)
    assert two == one
    assert {503, 500, 502, 429} <= set(one) and 200 in one
    assert two_rules == one_rules
    # both workers served requests (new connections are spread over the shared port)
    line = next(x for x in out.splitlines() if "requests per worker:" in x)
    counts = [
        int(part.rsplit(":", 1)[1]) for part in line.split("requests per worker:")[1].split(",")
    ]
    assert len(counts) == 2 and min(counts) > 0 and sum(counts) == len(PATHS) + 1
    assert "summary: " in out and "faults injected into 43 requests" in out


PHASED = """
name: phased
phases:
  - {name: calm, duration: 1h}
  - name: outage
    duration: 1h
    rules: [{name: down, match: {path: "/api/*"}, fault: {type: error, status: 503}}]
"""


def test_control_api_phases_scenarios_and_decision_log_reach_every_worker(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    path = tmp_path / "phased.yaml"
    path.write_text(PHASED)
    with running(upstream, path, 2) as proxy:
        assert [proxy.status("/api/x") for _ in range(6)] == [200] * 6
        r = requests.post(f"{proxy.api}/scenario/phase", json={"phase": "outage"}, timeout=10)
        assert r.status_code == 200, r.text
        # the coordinator's engine decides: the jump holds at once, on every worker
        assert [proxy.status("/api/x") for _ in range(10)] == [503] * 10
        assert proxy.status("/other") == 200
        body = "rules: [{name: teapot, match: {path: /tea}, fault: {type: error, status: 418}}]"
        assert requests.put(f"{proxy.api}/scenario", data=body, timeout=10).status_code == 200
        # a new scenario goes out to the workers (their copy says which requests to ask about)
        wait_until(lambda: all(proxy.status("/tea") == 418 for _ in range(6)), timeout=10)
        assert proxy.status("/api/x") == 200
        stats = proxy.stats()
        assert [r["name"] for r in stats["rules"]] == ["teapot"]

        def records() -> list[dict[str, Any]]:
            return requests.get(f"{proxy.api}/decisions", timeout=10).json()

        # workers forward their records in batches (every 50 ms)
        wait_until(lambda: sum(r["rule"] == "teapot" for r in records()) == 6, timeout=10)
        seen = records()
        rules = [r["rule"] for r in seen]
        assert rules.count("down") == 10 and rules.count(None) >= 1
        assert len({r["seq"] for r in seen}) == len(seen)  # one log, one numbering


def test_a_worker_that_dies_is_started_again(upstream: UpstreamServer, tmp_path: Path) -> None:
    path = tmp_path / "seeded.yaml"
    path.write_text(SEEDED)
    with running(upstream, path, 2) as proxy:
        children = Path(f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children").read_text()
        pids = [int(p) for p in children.split()]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)

        def replaced() -> bool:
            text = Path(f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children").read_text()
            now = {int(p) for p in text.split()}
            return len(now) == 2 and pids[0] not in now

        try:
            wait_until(replaced, timeout=20)
        except AssertionError:
            raise AssertionError(proxy.stop()) from None
        wait_until(lambda: all(proxy.status("/e") == 200 for _ in range(10)), timeout=20)
        out = proxy.stop()
    assert "exited (-9); starting it again" in out


def test_a_port_in_use_is_a_clear_error(upstream: UpstreamServer, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "chaosproxy.cli",
                "run",
                "--upstream",
                upstream.url,
                "--listen",
                f"127.0.0.1:{port}",
                "--admin",
                f"127.0.0.1:{free_port()}",
                "--workers",
                "2",
            ],  # fmt: skip
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert f"cannot start the proxy: cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_workers_must_be_a_sensible_number(upstream: UpstreamServer) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chaosproxy.cli", "run", "--upstream", upstream.url,
         "--workers", "0"],  # fmt: skip
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "'0' is not a number of workers from 1 to 64" in out.stderr


def test_workers_share_one_ca_created_before_they_start(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    from chaosproxy.proxy_addons.runner import ProxySettings
    from chaosproxy.proxy_addons.workers import ensure_ca

    confdir = tmp_path / "confdir"
    ensure_ca(ProxySettings(confdir=str(confdir)))
    ca = (confdir / "mitmproxy-ca.pem").read_bytes()
    ensure_ca(ProxySettings(confdir=str(confdir)))  # an existing CA is kept
    assert (confdir / "mitmproxy-ca.pem").read_bytes() == ca


HOLD = """
name: hold
rules: [{name: hang, match: {path: /hang}, fault: {type: timeout}}]
"""


def test_stats_count_the_flows_every_worker_holds(upstream: UpstreamServer, tmp_path: Path) -> None:
    import socket

    path = tmp_path / "hold.yaml"
    path.write_text(HOLD)
    with running(upstream, path, 2) as proxy:
        port = int(proxy.url.rsplit(":", 1)[1])
        clients = []
        for _ in range(6):  # fresh connections: spread over both workers
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
        try:
            wait_until(lambda: proxy.stats()["held"] == 6, timeout=15, interval=0.05)
        finally:
            for client in clients:
                client.close()
        wait_until(lambda: proxy.stats()["held"] == 0, timeout=15, interval=0.05)
