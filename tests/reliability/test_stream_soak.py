"""A short stream soak (``make soak-stream`` runs the 10-minute one): endless SSE streams
through ``chaosproxy run``, shaped by a stream fault; the events arrive whole and in
order, and the proxy's RSS stays flat (a generous bound: a few seconds only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_short_stream_soak_keeps_the_proxy_rss_flat(tmp_path: Path) -> None:
    report = tmp_path / "stream-soak.json"
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "stream_soak.py"),
            "--seconds", "6",
            "--warmup", "2",
            "--stall-after", "200",
            "--rss-slack", "15",
            "--json", str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(report.read_text())
    assert figures["problems"] == []
    # 4 streams of 1 KB events every 5 ms: some MB went through (far less on a busy machine)
    assert figures["bytes"] > 1_000_000 and figures["events"] > 1000
    assert figures["rss_growth_mb"] < 15
