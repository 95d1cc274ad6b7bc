"""Every request through a real proxy leaves one decision record saying what the client got."""

from __future__ import annotations

import requests

from chaosproxy.core.decisions import DecisionRecord
from tests.support import curl, free_port, wait_until


def rules(*items: dict) -> dict:
    return {"seed": 1, "rules": list(items)}


def last(proxy, n: int = 1) -> list[DecisionRecord]:
    records = wait_until(lambda: len(proxy.decisions) >= n and proxy.decisions, timeout=10)
    return records[-n:]


def test_passthrough_and_injected_errors_are_both_recorded(make_proxy, upstream) -> None:
    proxy = make_proxy(
        rules(
            {"name": "down", "match": {"path": "/down"}, "fault": {"type": "error", "status": 503}}
        )
    )
    assert requests.get(f"{proxy.url}/echo?a=1").status_code == 200
    assert requests.get(f"{proxy.url}/down").status_code == 503
    ok, down = last(proxy, 2)
    assert ok.rule is None and ok.fault is None and ok.faults == ()
    assert (ok.outcome, ok.status, ok.upstream_status) == ("response", 200, 200)
    assert ok.method == "GET" and ok.path == "/echo" and ok.url == f"{upstream.url}/echo?a=1"
    assert (down.rule, down.faults, down.fault) == ("down", ("error",), "error 503")
    assert (down.outcome, down.status, down.upstream_status) == ("response", 503, None)
    assert down.seq == ok.seq + 1 and down.time >= ok.time and down.monotonic >= ok.monotonic


def test_reset_close_and_response_stage_abort(make_proxy) -> None:
    proxy = make_proxy(
        rules(
            {"name": "rst", "match": {"path": "/rst"}, "fault": {"type": "abort", "how": "reset"}},
            {"name": "fin", "match": {"path": "/fin"}, "fault": {"type": "abort", "how": "close"}},
            {
                "name": "late",
                "match": {"path": "/late"},
                "fault": {"type": "abort", "how": "close", "on": "response"},
            },
        )
    )
    assert curl(f"{proxy.url}/rst")[0] == 56
    assert curl(f"{proxy.url}/fin")[0] == 52
    assert curl(f"{proxy.url}/late")[0] == 52
    rst, fin, late = last(proxy, 3)
    assert (rst.rule, rst.outcome, rst.status) == ("rst", "reset", None)
    assert (fin.rule, fin.outcome, fin.upstream_status) == ("fin", "closed", None)
    assert (late.rule, late.outcome, late.upstream_status) == ("late", "closed", 200)


def test_latency_is_recorded_as_added_latency(make_proxy) -> None:
    proxy = make_proxy(rules({"fault": {"type": "latency", "delay": "200ms"}}))
    assert requests.get(f"{proxy.url}/echo").status_code == 200
    (rec,) = last(proxy)
    assert rec.faults == ("latency",) and rec.outcome == "response" and rec.status == 200
    assert 0.15 <= rec.added_latency < 1.0 and rec.duration >= rec.added_latency


def test_a_client_that_gives_up_during_a_hold(make_proxy) -> None:
    proxy = make_proxy(rules({"name": "hang", "fault": {"type": "timeout"}}))
    assert curl(f"{proxy.url}/x", "--max-time", "0.5")[0] == 28
    rec = wait_until(lambda: proxy.decisions and proxy.decisions[-1])
    assert (rec.rule, rec.outcome, rec.status) == ("hang", "client_disconnected", None)
    assert rec.added_latency >= 0.4


def test_an_unreachable_upstream_is_an_error_with_502() -> None:
    from chaosproxy.testing.api import ChaosProxy

    with ChaosProxy(upstream=f"http://127.0.0.1:{free_port()}") as proxy:
        assert requests.get(f"{proxy.url}/x").status_code == 502
        (rec,) = last(proxy)
    assert (rec.outcome, rec.status, rec.upstream_status, rec.rule) == ("error", 502, None, None)
    assert rec.error


def test_retries_share_a_request_key_and_listeners_see_each_record(make_proxy) -> None:
    proxy = make_proxy()
    seen: list[DecisionRecord] = []
    unsubscribe = proxy.on_decision(seen.append)
    for _ in range(2):
        requests.post(f"{proxy.url}/pay", json={"amount": 3})
    requests.post(f"{proxy.url}/pay", json={"amount": 4})
    requests.post(f"{proxy.url}/pay", json={"amount": 5}, headers={"Idempotency-Key": "k1"})
    wait_until(lambda: len(seen) == 4)
    unsubscribe()
    a, b, c, d = seen
    assert a.request_key == b.request_key != c.request_key
    assert d.request_key == "idem:k1"
    requests.get(f"{proxy.url}/echo")
    wait_until(lambda: len(proxy.decisions) == 5)
    assert len(seen) == 4


def test_paused_requests_are_recorded_untouched(make_proxy) -> None:
    proxy = make_proxy(rules({"fault": {"type": "error", "status": 500}}))
    proxy.pause()
    for _ in range(3):
        assert requests.get(f"{proxy.url}/echo").status_code == 200
    records = last(proxy, 3)
    assert all(r.rule is None and r.status == 200 for r in records)


def test_faulted_flows_are_marked_and_commented_with_the_outcome(make_proxy) -> None:
    proxy = make_proxy(rules({"name": "rst", "fault": {"type": "abort", "how": "reset"}}))
    seen = []
    real = proxy.addon.recorder.record

    def spy(flow, wire, arrived, phase, **early):
        real(flow, wire, arrived, phase, **early)
        seen.append((flow.marked, flow.comment, dict(flow.metadata["chaos"])))

    proxy.addon.recorder.record = spy
    assert curl(f"{proxy.url}/x")[0] == 56
    wait_until(lambda: seen)
    marked, comment, meta = seen[0]
    assert marked == ":zap:"
    assert comment == "chaosproxy: rule rst injected abort reset -> client got: reset"
    assert meta["rule"] == "rst" and meta["outcome"] == "reset" and meta["status"] is None
