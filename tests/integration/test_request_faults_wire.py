"""Faults asked for by the request (``request_faults: true``) through a real proxy, with
requests: ``X-Chaos-Fault`` injects for that one request, is stripped before the
upstream, a bad value is ignored (counted, one warning), and nothing happens without
``request_faults``. (Clients beyond loopback: tests/proxy_addons/test_asked.py.)"""

from __future__ import annotations

import logging
import time

import pytest
import requests

from tests.support import UpstreamServer, wait_until

ON = {
    "request_faults": True,
    "rules": [
        {
            "name": "slow-json",
            "match": {"path": "/json"},
            "fault": {"type": "latency", "delay": "10ms"},
        }
    ],
}


def _upstream_saw(upstream: UpstreamServer, marker: str) -> dict[str, str] | None:
    for _, path, headers, _ in list(upstream.received):
        if marker in path:
            return headers
    return None


def test_a_request_gets_the_error_it_asks_for_and_the_upstream_is_not_called(
    make_proxy, upstream: UpstreamServer
) -> None:
    proxy = make_proxy(ON)
    r = requests.get(f"{proxy.url}/echo?m=asked-503", headers={"X-Chaos-Fault": "error=503"})
    assert r.status_code == 503
    assert r.json()["rule"] == "X-Chaos-Fault" and r.json()["injected_by"] == "chaosproxy"
    assert _upstream_saw(upstream, "asked-503") is None
    plain = requests.get(f"{proxy.url}/echo?m=not-asked")  # the next one: untouched
    assert plain.status_code == 200
    wait_until(lambda: len(proxy.decisions) == 2)
    asked, untouched = proxy.decisions
    assert (asked.rule, asked.faults, asked.status) == ("X-Chaos-Fault", ("error",), 503)
    assert asked.upstream_status is None and untouched.rule is None
    stats = proxy.stats
    assert stats["requests"] == 2 and stats["injected"] == 1
    assert all(rule["injected"] == 0 for rule in stats["rules"])  # no rule fired


def test_several_faults_apply_in_order_and_both_headers_are_stripped(
    make_proxy, upstream: UpstreamServer
) -> None:
    proxy = make_proxy(ON)
    started = time.monotonic()
    r = requests.get(
        f"{proxy.url}/echo?m=slow-502",
        headers={"X-Chaos-Fault": "latency=300ms; error=502", "X-Chaos-Token": "whatever"},
    )
    took = time.monotonic() - started
    assert r.status_code == 502 and 0.3 <= took < 1.5
    r = requests.get(f"{proxy.url}/echo?m=slow-pass", headers={"X-Chaos-Fault": "latency=200ms"})
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert not {"x-chaos-fault", "x-chaos-token"} & {k.lower() for k in seen}
    wait_until(lambda: len(proxy.decisions) == 2)
    assert proxy.decisions[1].fault == "latency 200ms"
    assert proxy.decisions[1].added_latency >= 0.19


def test_abort_asked_for_resets_the_connection(make_proxy) -> None:
    proxy = make_proxy(ON)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.url}/echo", headers={"X-Chaos-Fault": "abort"})


def test_a_bad_value_is_ignored_counted_and_warned_once(
    make_proxy, upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy(ON, admin=True)
    with caplog.at_level(logging.WARNING, logger="chaosproxy"):
        for value in ("error=99", "explode=1", "latency=fast"):
            r = requests.get(f"{proxy.url}/echo?m=bad", headers={"X-Chaos-Fault": value})
            assert r.status_code == 200  # ignored: the rules decide (none matches /echo)
            assert "x-chaos-fault" not in {k.lower() for k in r.json()["headers"]}
    warnings = [rec.getMessage() for rec in caplog.records if "X-Chaos-Fault" in rec.getMessage()]
    assert warnings == [
        "X-Chaos-Fault: 'error=99' ignored: part 1 ('error=99'): must be an HTTP status "
        "between 200 and 599"
    ]
    metrics = requests.get(f"{proxy.admin_url}/metrics", timeout=5).text
    assert 'chaosproxy_request_faults_ignored_total{reason="invalid"} 3' in metrics
    r = requests.get(f"{proxy.url}/json", headers={"X-Chaos-Fault": "error="})
    assert r.status_code == 200  # and the rule for /json still fires
    wait_until(lambda: len(proxy.decisions) == 4)
    assert proxy.decisions[-1].rule == "slow-json"


def test_without_request_faults_the_header_passes_untouched(
    make_proxy, upstream: UpstreamServer
) -> None:
    proxy = make_proxy({"rules": []})
    r = requests.get(f"{proxy.url}/echo?m=off", headers={"X-Chaos-Fault": "error=503"})
    assert r.status_code == 200
    assert r.json()["headers"].get("X-Chaos-Fault") == "error=503"
    proxy.apply(ON)
    proxy.pause()  # paused: nothing is injected, the header is still removed
    r = requests.get(f"{proxy.url}/echo?m=paused", headers={"X-Chaos-Fault": "error=503"})
    assert r.status_code == 200 and "X-Chaos-Fault" not in r.json()["headers"]
