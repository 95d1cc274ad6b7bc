"""The issue's checks as a user runs them: ``chaosproxy run`` in a subprocess, curl outside."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli.test_cli import listening, start
from tests.support import UpstreamServer, free_port, require_tool, wait_until

BODY_FAULTS = """\
seed: 4
rules:
  - {match: {path: /truncate}, fault: {type: malformed, mode: truncate}}
  - {match: {path: /invalid}, fault: {type: malformed, mode: invalid_json}}
  - {match: {path: /empty}, fault: {type: malformed, mode: empty}}
  - {match: {path: /html}, fault: {type: malformed, mode: wrong_content_type}}
  - {match: {path: /mutate}, fault: {type: malformed, mode: mutate_json, fields: [headers]}}
  - {match: {path: "/bytes/*"}, fault: {type: throttle, rate: 10KB/s}}
  - {match: {path: /limited}, fault: {type: rate_limit, limit: 2, per: 10s}}
"""

PHASES = """\
phases:
  - {name: calm, duration: 2s}
  - name: outage
    duration: 2s
    rules: [{fault: {type: error, status: 503}}]
  - {name: calm-again, duration: 2s}
"""


@contextmanager
def running(tmp_path: Path, upstream: UpstreamServer, scenario: str) -> Iterator[tuple[str, list]]:
    path = tmp_path / "s.yaml"
    path.write_text(scenario)
    port = free_port()
    proc = start(
        "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}", "--scenario", str(path)
    )
    out: list[str] = []
    try:
        wait_until(lambda: listening(port) or proc.poll() is not None, timeout=15)
        yield f"http://127.0.0.1:{port}", out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
        out.append(proc.stdout.read() if proc.stdout else "")


def curl_full(url: str, *args: str) -> tuple[int, str, str, str, float, int]:
    """(exit code, status, content type, body, seconds, body bytes)."""
    exe = require_tool("curl")
    done = subprocess.run(
        [
            exe,
            "-s",
            "-D",
            "-",
            "-w",
            "\n%{http_code}|%{content_type}|%{time_total}|%{size_download}",
            *args,
            url,
        ],
        capture_output=True,
        timeout=30,
    )
    text = done.stdout.decode("utf-8", "replace")
    body_and_head, _, meta = text.rpartition("\n")
    status, ctype, seconds, size = meta.split("|")
    body = body_and_head.split("\r\n\r\n", 1)[-1]
    return done.returncode, status, ctype, body, float(seconds), int(size)


def test_body_faults_throttle_and_rate_limit_through_chaosproxy_run(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    with running(tmp_path, upstream, BODY_FAULTS) as (url, out):
        assert curl_full(f"{url}/truncate")[0] == 18

        code, status, ctype, body, _, _ = curl_full(f"{url}/invalid")
        assert (code, status, ctype) == (0, "200", "application/json")
        try:
            json.loads(body)
            raise AssertionError(f"parsed: {body!r}")
        except ValueError:
            pass

        code, status, _, body, _, _ = curl_full(f"{url}/empty")
        assert (code, status, body) == (0, "200", "")

        code, status, ctype, body, _, _ = curl_full(f"{url}/html")
        assert (status, ctype.split(";")[0]) == ("502", "text/html")

        doc = json.loads(curl_full(f"{url}/mutate")[3])
        assert "headers" not in doc and doc["path"] == "/mutate" and doc["method"] == "GET"

        code, status, _, _, seconds, size = curl_full(f"{url}/bytes/18800")
        assert (code, status, size) == (0, "200", 18800)
        assert 1.8 <= seconds < 3.0

        limited = [curl_full(f"{url}/limited") for _ in range(3)]
        assert [r[1] for r in limited] == ["200", "200", "429"]
        retry_after = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%header{retry-after}", f"{url}/limited"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert retry_after in {str(n) for n in range(1, 11)}
    log = out[0]
    assert "Traceback" not in log
    assert "injected throttle-6 [throttle 10KB/s]" in log


def test_three_phases_through_chaosproxy_run(tmp_path: Path, upstream: UpstreamServer) -> None:
    with running(tmp_path, upstream, PHASES) as (url, out):
        ready = time.monotonic()  # the port answers: the proxy is ready (clock started)
        statuses = []
        for mid in (1.0, 3.0, 5.0):
            wait_until(lambda mid=mid: time.monotonic() - ready >= mid, timeout=10)
            statuses.append(curl_full(f"{url}/x")[1])
        assert statuses == ["200", "503", "200"]
    log = out[0]
    begins = [line.split("phase ", 1)[1] for line in log.splitlines() if "begins" in line]
    assert begins == ["calm begins", "outage begins", "calm-again begins"]
