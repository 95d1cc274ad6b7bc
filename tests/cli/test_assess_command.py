"""``chaosproxy assess -- CMD``, run as users run it: the command gets the forward proxy in
HTTP_PROXY (and CHAOSPROXY_URL), its exit status is the outcome, and --expect gates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port, require_tool, running_upstream

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def test_a_command_assessed_through_the_forward_proxy(tmp_path: Path) -> None:
    curl = require_tool("curl")
    policy = tmp_path / "policy.yaml"
    policy.write_text("attempts: 1\nretries_4xx: false\ntimeout_s: '<= 1'\nfallback: true\n")
    out = tmp_path / "assessment.json"
    port = free_port()
    with running_upstream() as upstream:
        # curl reads http_proxy: the forward listener; no retries, a 0.5 s budget
        command = f"{curl} -s -f -o /dev/null -m 0.5 {upstream.url}/json"
        done = subprocess.run(
            [
                str(BIN / "chaosproxy"),
                "assess",
                "--upstream",
                upstream.url,
                "--listen",
                str(port),
                "--quick",
                "--hang-cap",
                "2",
                "--json",
                str(out),
                "--expect",
                str(policy),
                "--",
                "sh",
                "-c",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
    print(done.stdout[-3000:], done.stderr[-2000:])
    assert done.returncode == 1  # fallback: true is missed, and only that
    assert "1 of 4 expectations missed" in done.stdout
    assert "Traceback" not in done.stderr
    assert f"the app under test must call http://127.0.0.1:{port}" in done.stderr
    doc = json.loads(out.read_text())
    assert doc["target"]["trigger"] == "command"
    assert doc["target"]["proxy_url"] == f"http://127.0.0.1:{port}"
    assert doc["policy"]["attempts"] == 1
    assert doc["policy"]["timeout_s"] == pytest.approx(0.5, rel=0.1)
    assert doc["policy"]["fallback"] is False
    baseline = doc["experiments"][0]["samples"][0]
    assert baseline["outcome"]["exit_code"] == 0
    assert [a["path"] for a in baseline["attempts"]] == ["/json"]
