"""Prometheus text from decision records."""

from __future__ import annotations

from chaosproxy.core.metrics import Metrics
from tests.core.test_decisions import record

STATE = {
    "scenario": 'we"ird\\name',
    "source": "s.yaml",
    "seed": 3,
    "seed_source": "run",
    "phase": "outage",
    "phases": ["calm", "outage"],
    "paused": False,
    "held": 2,
}


def test_counts_faults_statuses_outcomes_and_latency() -> None:
    m = Metrics(buckets=(0.1, 1.0))
    m(record(1))
    m(record(2, rule="slow", faults=("latency", "error"), status=502, upstream_status=None,
             added_latency=0.3))  # fmt: skip
    m(record(3, rule="cut", faults=("abort",), outcome="reset", status=None, upstream_status=None))
    m(record(4, rule="slow", faults=("latency",), added_latency=2.0))
    text = m.render(STATE)
    lines = set(text.splitlines())
    assert "chaosproxy_requests_total 4" in lines
    assert 'chaosproxy_outcomes_total{outcome="reset"} 1' in lines
    assert 'chaosproxy_outcomes_total{outcome="response"} 3' in lines
    assert 'chaosproxy_faults_injected_total{rule="slow",type="latency"} 2' in lines
    assert 'chaosproxy_faults_injected_total{rule="slow",type="error"} 1' in lines
    assert 'chaosproxy_faults_injected_total{rule="cut",type="abort"} 1' in lines
    assert 'chaosproxy_upstream_responses_total{code="200"} 2' in lines
    assert 'chaosproxy_responses_total{code="502"} 1' in lines
    assert 'chaosproxy_added_latency_seconds_bucket{le="0.1"} 0' in lines
    assert 'chaosproxy_added_latency_seconds_bucket{le="1"} 1' in lines
    assert 'chaosproxy_added_latency_seconds_bucket{le="+Inf"} 2' in lines
    assert "chaosproxy_added_latency_seconds_sum 2.3" in lines
    assert "chaosproxy_added_latency_seconds_count 2" in lines
    assert (
        'chaosproxy_scenario_info{scenario="we\\"ird\\\\name",source="s.yaml",seed="3",seed_source="run"} 1'
        in lines
    )
    assert 'chaosproxy_phase{scenario="we\\"ird\\\\name",phase="outage"} 1' in lines
    assert 'chaosproxy_phase{scenario="we\\"ird\\\\name",phase="calm"} 0' in lines
    assert "chaosproxy_paused 0" in lines and "chaosproxy_held_flows 2" in lines


def test_every_sample_belongs_to_a_declared_family() -> None:
    m = Metrics()
    m(record(1, rule="r", faults=("error",), status=500, upstream_status=None))
    families = set()
    for line in m.render(STATE).splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
        elif not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            base = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            assert name in families or base in families, line


def test_grpc_statuses_are_counted_by_name() -> None:
    m = Metrics()
    m(record(1, rule="down", faults=("grpc_status",), grpc_status=14, upstream_status=None))
    m(record(2, rule="down", faults=("grpc_status",), grpc_status=14, upstream_status=None))
    m(record(3, grpc_status=0))
    m(record(4))  # not a gRPC call: not counted there
    lines = set(m.render(STATE).splitlines())
    assert 'chaosproxy_faults_injected_total{rule="down",type="grpc_status"} 2' in lines
    assert 'chaosproxy_grpc_responses_total{code="UNAVAILABLE"} 2' in lines
    assert 'chaosproxy_grpc_responses_total{code="OK"} 1' in lines
    assert 'chaosproxy_responses_total{code="200"} 4' in lines
