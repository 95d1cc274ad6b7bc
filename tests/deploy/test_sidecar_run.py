"""The sidecar's command line from the rendered manifest, run for real: only the addresses
(loopback, free ports), the upstream and the paths are the test's; the scenario lives in a
ConfigMap volume that is updated the kubelet's way while the proxy runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import requests

from tests.cli.test_cli import EXE, listening
from tests.deploy.configmap import ConfigMapVolume
from tests.deploy.test_kubernetes import pod, render, sidecar_args
from tests.support import UpstreamServer, free_port, wait_until

TOKEN = "sidecar-test-token"
FIRST = "name: first\nrules: [{name: a, fault: {type: error, status: 503}}]\n"
SECOND = "name: other\nrules: [{name: b, fault: {type: error, status: 418}}]\n"


def manifest_command(
    upstream: str, listen: int, admin: int, scenario: Path, confdir: Path
) -> list[str]:
    spec = pod(render("one-proxy"))
    parsed = sidecar_args(spec)  # also proves chaosproxy's parser takes the manifest's args
    [chaosproxy] = [c for c in spec["initContainers"] if c["name"] == "chaosproxy"]
    swap = {
        "--upstream": upstream,
        "--listen": f"127.0.0.1:{listen}",
        "--admin": f"127.0.0.1:{admin}",  # the pod's 0.0.0.0: loopback only in tests
        "--scenario": str(scenario),
        "--confdir": str(confdir),
    }
    assert Path(parsed.scenario).name == scenario.name
    command = []
    for arg in chaosproxy["args"][1:]:
        flag, eq, _ = arg.partition("=")
        command.append(f"{flag}={swap[flag]}" if eq and flag in swap else arg)
    assert sorted(a.partition("=")[0] for a in command if a.partition("=")[0] in swap) == sorted(
        swap
    )
    return [EXE, *command]


def test_the_sidecar_command_serves_probes_and_follows_configmap_updates(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    volume = ConfigMapVolume(tmp_path / "scenarios", {"active.yaml": FIRST})
    port, admin = free_port(), free_port()
    command = manifest_command(
        upstream.url, port, admin, volume.path("active.yaml"), tmp_path / "mitmproxy"
    )
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CHAOSPROXY_ADMIN_TOKEN": TOKEN},
    )
    base, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    try:
        wait_until(lambda: listening(admin) and listening(port), timeout=20)
        # the kubelet's probe: no token, the status word only
        probe = requests.get(f"{api}/healthz", timeout=5)
        assert (probe.status_code, probe.json()) == (200, {"status": "ok"})
        assert requests.get(f"{api}/stats", timeout=5).status_code == 401
        assert requests.get(f"{base}/v1/x", timeout=10).status_code == 503
        # kubectl apply -k with an edited scenario: the kubelet swaps ..data
        volume.update({"active.yaml": SECOND})
        wait_until(
            lambda: requests.get(f"{base}/v1/x", timeout=10).status_code == 418,
            timeout=10,
            interval=0.1,
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{api}/scenario", headers=auth, timeout=5).json()["name"] == "other"
        assert (tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem").exists()  # the egress CA
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len(out.strip().splitlines())  # --log-format=json: all JSON
    assert any(line["message"].endswith("changed: reloading") for line in lines)
