"""A short soak (``make soak`` runs the long one): mixed faults under load, then the
decision log, /stats and what the clients saw must agree exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_agrees_with_itself(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "soak.py"),
            "--seconds",
            "20",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(report.read_text())
    assert figures["failures"] == []
    assert figures["requests"] >= 400  # ~60/s for 20 s; fewer on a busy machine
    assert figures["decision_records"] == figures["requests"]
    assert figures["missing"] == figures["double_counted"] == figures["mismatched"] == 0
    assert figures["stats_match"] and figures["proxy_log_problems"] == 0
    assert figures["corrupt_bodies"] == 0 and figures["proxy_exit"] == 0
    # the mix really was mixed: answers, resets, closes and cut bodies all happened
    outcomes = figures["client_outcomes"]
    assert {"reset", "closed", "truncated", "response 200", "response 503"} <= set(outcomes)
    assert sum(figures["per_rule"].values()) == figures["injected"] > 50
