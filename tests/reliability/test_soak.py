"""A short soak (``make soak`` runs the long one): mixed faults under load, with uploads,
churning clients and clients that leave mid-upload; then the decision log, /stats, the
metrics and what the clients saw must agree exactly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_script", ROOT / "scripts" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert figures["failures"] == [] and figures["reconciliation"] == []
    assert figures["requests"] >= 400  # ~60/s for 20 s; fewer on a busy machine
    assert (
        figures["decision_records"]
        == figures["stats_requests"]
        == figures["metrics_requests"]
        == figures["requests"]
    )
    assert figures["missing"] == figures["double_counted"] == figures["mismatched"] == 0
    assert figures["stats_match"] and figures["proxy_log_problems"] == 0
    assert figures["corrupt_bodies"] == 0 and figures["proxy_exit"] == 0
    assert figures["connections"]["end"] <= figures["connections"]["start"]
    # the mix really was mixed: answers, resets, closes and cut bodies all happened
    outcomes = figures["client_outcomes"]
    assert {"reset", "closed", "truncated", "response 200", "response 503"} <= set(outcomes)
    assert sum(figures["per_rule"].values()) == figures["injected"] > 50
    # uploads of both sizes, some refused or delayed by a rule; churning connections
    kinds = figures["kinds"]
    assert kinds["upload-small"] > 10 and kinds["upload-large"] > 10
    assert figures["per_rule"]["upload-refused"] > 0 and figures["per_rule"]["upload-slow"] > 0
    for kind in ("upload-small", "upload-large"):
        assert {"response 200", "response 413"} <= set(figures["upload_outcomes"][kind])
    assert figures["fresh_connections"] > 50
    # clients that left mid-upload: each recorded once, as such, some with a rule fired
    assert kinds["leaver"] > 10
    assert figures["leaver_outcomes"] == {"client_disconnected": kinds["leaver"]}
    assert outcomes["client_disconnected"] == kinds["leaver"]
    assert figures["per_outcome"]["client_disconnected"] == kinds["leaver"]
    assert set(figures["leaver_rules"]) - {"-"}


def _agreeing() -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Three requests as the decision log, /stats and the metrics tell them, in agreement."""
    records: list[dict[str, Any]] = [
        {"method": "GET", "path": "/api/a", "rule": "unavailable", "outcome": "response",
         "status": 503},
        {"method": "GET", "path": "/api/b", "rule": None, "outcome": "response", "status": 200},
        {"method": "POST", "path": "/upload/1", "rule": "upload-slow",
         "outcome": "client_disconnected", "status": None},
    ]  # fmt: skip
    seen = {"unavailable": 2, "slow": 1, "reset": 1, "hangup": 2, "gateway-timeout": 1,
            "bad-gateway": 2, "upload-refused": 1, "upload-slow": 1}  # fmt: skip
    injected = {"unavailable": 1, "upload-slow": 1}
    stats: dict[str, Any] = {
        "requests": 3,
        "injected": 2,
        "rules": [
            {"name": name, "seen": seen.get(name, 0), "injected": injected.get(name, 0)}
            for name in _soak_module().MATCHES
        ],
    }
    metrics = "\n".join(
        [
            "chaosproxy_requests_total 3",
            'chaosproxy_outcomes_total{outcome="client_disconnected"} 1',
            'chaosproxy_outcomes_total{outcome="response"} 2',
            'chaosproxy_faults_injected_total{rule="unavailable",type="error"} 1',
            'chaosproxy_faults_injected_total{rule="upload-slow",type="latency"} 1',
            'chaosproxy_responses_total{code="200"} 1',
            'chaosproxy_responses_total{code="503"} 1',
        ]
    )
    return records, stats, metrics


def test_the_reconciliation_finds_every_kind_of_disagreement() -> None:
    reconcile = _soak_module().reconcile
    records, stats, metrics = _agreeing()
    assert reconcile(records, stats, metrics) == []
    # a client that left mid-upload, counted by /stats and the metrics but not recorded
    diffs = reconcile(records[:2], stats, metrics)
    assert any(d.startswith("requests: /stats 3, decision log 2, metrics 3") for d in diffs)
    assert any(d.startswith("rule upload-slow injected: /stats 1, decision log 0") for d in diffs)
    assert any(d.startswith("outcomes:") for d in diffs)
    # the metrics missed one outcome / one fault of a rule
    fewer = metrics.replace('outcome="client_disconnected"} 1', 'outcome="client_disconnected"} 0')
    assert [d for d in reconcile(records, stats, fewer) if d.startswith("outcomes:")]
    fewer = metrics.replace(
        'rule="upload-slow",type="latency"} 1', 'rule="upload-slow",type="latency"} 2'
    )
    assert reconcile(records, stats, fewer) == [
        "rule upload-slow injected: /stats 1, decision log 1, metrics 2"
    ]
    # /stats counted a rule as seen once more than the decision log accounts for
    stats["rules"][0]["seen"] += 1
    assert reconcile(records, stats, metrics) == ["rule unavailable seen: /stats 3, decision log 2"]
    stats["rules"][0]["seen"] -= 1
    # a client status the metrics do not have
    assert reconcile(records, stats, metrics.replace('code="503"} 1', 'code="503"} 0')) == [
        "client statuses: decision log {'503': 1, '200': 1}, metrics {'200': 1}"
    ]
