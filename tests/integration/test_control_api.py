"""The control API of a real proxy, driven with real HTTP clients (requests, curl)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from chaosproxy.control.server import AdminConfigError
from chaosproxy.testing.api import ChaosProxy
from tests.support import require_tool, wait_until

ERROR_418 = "rules: [{name: teapot, match: {path: /tea}, fault: {type: error, status: 418}}]\n"


@pytest.fixture
def proxy(make_proxy):
    return make_proxy(
        {"name": "start", "seed": 4, "rules": [{"name": "down", "fault": {"type": "error"}}]},
        admin=True,
    )


def api(proxy: ChaosProxy, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{proxy.admin_url}{path}", timeout=10, **kwargs)


def test_healthz_and_scenario_document(proxy) -> None:
    assert proxy.admin_url.startswith("http://127.0.0.1:")
    assert api(proxy, "GET", "/healthz").json()["status"] == "ok"
    doc = api(proxy, "GET", "/scenario").json()
    assert doc["name"] == "start" and doc["seed"] == 4 and doc["phase"] is None
    assert doc["rules"] == [{"name": "down", "fault": [{"type": "error"}]}]
    assert doc["paused"] is False and doc["expires_in"] is None


def test_put_changes_behaviour_for_the_next_request(proxy) -> None:
    assert requests.get(f"{proxy.url}/tea").status_code == 500
    # YAML with a JSON Content-Type: the body is read whatever the header says
    r = api(proxy, "PUT", "/scenario", data=ERROR_418, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "api" and r.json()["source"] == "PUT /scenario"
    assert requests.get(f"{proxy.url}/tea").status_code == 418
    assert requests.get(f"{proxy.url}/echo").status_code == 200


def test_invalid_put_is_refused_with_located_problems_and_the_old_scenario_acts(proxy) -> None:
    body = "rules:\n  - fault: {type: error, status: 99}\n  - fault: {type: explode}\n"
    r = api(proxy, "PUT", "/scenario", data=body)
    assert r.status_code == 400
    problems = r.json()["problems"]
    assert problems[0] == (
        "body:2:34: rules[0].fault.status: must be an HTTP status between 200 and 599, got 99"
    )
    assert problems[1].startswith("body:3:19: rules[1].fault.type: unknown fault type 'explode'")
    assert "still running start" in r.json()["error"]
    assert requests.get(f"{proxy.url}/x").status_code == 500
    for bad in ("", "rules: [", "[1, 2]", b"\xff\xfe"):
        assert api(proxy, "PUT", "/scenario", data=bad).status_code == 400
    assert api(proxy, "GET", "/scenario").json()["name"] == "start"


def test_put_a_shipped_scenario_by_name_and_get_output_round_trips(proxy) -> None:
    r = api(proxy, "PUT", "/scenario", json={"name": "outage", "seed": 9})
    assert r.status_code == 200 and r.json()["seed"] == 9
    assert r.json()["source"].endswith("outage.yaml")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.url}/x")
    bad = api(proxy, "PUT", "/scenario", json={"name": "outgae"})
    assert bad.status_code == 400 and "did you mean 'outage'" in bad.json()["problems"][0]
    # a name is a shipped scenario, never a file on the proxy's disk
    for path in ("/etc/hostname", "../scenarios/outage.yaml", "outage.yaml"):
        refused = api(proxy, "PUT", "/scenario", json={"name": path})
        assert refused.status_code == 400 and "no shipped scenario named" in refused.text
    # what GET returns can be PUT back as it is
    doc = api(proxy, "GET", "/scenario").json()
    assert api(proxy, "PUT", "/scenario", data=json.dumps(doc)).status_code == 200
    assert api(proxy, "GET", "/scenario").json()["rules"] == doc["rules"]


def test_scenarios_list_for_pickers(proxy) -> None:
    listed = {s["name"]: s for s in api(proxy, "GET", "/scenarios").json()}
    assert {"healthy", "flaky", "outage", "slow"} <= set(listed)
    assert listed["flaky"]["description"] and listed["flaky"]["phases"] == []
    assert not any(s["active"] for s in listed.values())


def test_phase_jump_pause_resume_reset_and_stats(make_proxy) -> None:
    proxy = make_proxy(
        {
            "name": "storm",
            "phases": [
                {"name": "calm", "duration": "1h"},
                {"name": "outage", "rules": [{"name": "e", "fault": {"type": "error"}}]},
            ],
        },
        admin=True,
    )
    assert requests.get(f"{proxy.url}/x").status_code == 200
    r = api(proxy, "POST", "/scenario/phase", json={"phase": "outage"})
    assert r.status_code == 200 and r.json()["phase"] == "outage"
    assert requests.get(f"{proxy.url}/x").status_code == 500
    bad = api(proxy, "POST", "/scenario/phase", json={"phase": "nope"})
    assert bad.status_code == 400 and "calm, outage" in bad.json()["error"]
    assert api(proxy, "POST", "/scenario/phase", data="{}").status_code == 400
    assert api(proxy, "POST", "/pause").json() == {"paused": True}
    assert requests.get(f"{proxy.url}/x").status_code == 200
    assert api(proxy, "POST", "/resume").json() == {"paused": False}
    stats = api(proxy, "GET", "/stats").json()
    assert stats["requests"] == 3 and stats["injected"] == 1 and stats["phase"] == "outage"
    assert stats["rules"] == [
        {"name": "e", "phase": "outage", "seen": 1, "injected": 1, "fault": "error 500"}
    ]
    assert api(proxy, "POST", "/reset").json()["requests"] == 0
    assert api(proxy, "GET", "/stats").json()["phase"] == "calm"
    assert api(proxy, "GET", "/decisions").json() == []


def test_decisions_newest_last_with_since_and_limit(proxy) -> None:
    for path in ("/a", "/b", "/c"):
        requests.get(f"{proxy.url}{path}")
    all_ = api(proxy, "GET", "/decisions").json()
    assert [d["path"] for d in all_] == ["/a", "/b", "/c"]
    assert {"time", "method", "url", "rule", "fault", "outcome"} <= set(all_[0])
    assert all_[0]["rule"] == "down" and all_[0]["status"] == 500
    first = all_[0]["seq"]
    assert [d["path"] for d in api(proxy, "GET", f"/decisions?since={first}").json()] == [
        "/b",
        "/c",
    ]
    assert [d["path"] for d in api(proxy, "GET", "/decisions?limit=1").json()] == ["/c"]
    assert api(proxy, "GET", "/decisions?limit=x").status_code == 400


def test_metrics_count_what_was_injected(make_proxy) -> None:
    proxy = make_proxy(
        {
            "seed": 1,
            "rules": [
                {
                    "name": "slow",
                    "match": {"path": "/slow"},
                    "fault": {"type": "latency", "delay": "100ms"},
                },
                {
                    "name": "down",
                    "match": {"path": "/down"},
                    "fault": {"type": "error", "status": 503},
                },
            ],
        },
        admin=True,
    )
    for path in ("/slow", "/down", "/down", "/echo"):
        requests.get(f"{proxy.url}{path}")
    r = api(proxy, "GET", "/metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert "chaosproxy_requests_total 4" in text
    assert 'chaosproxy_faults_injected_total{rule="down",type="error"} 2' in text
    assert 'chaosproxy_faults_injected_total{rule="slow",type="latency"} 1' in text
    assert 'chaosproxy_upstream_responses_total{code="200"} 2' in text
    assert 'chaosproxy_responses_total{code="503"} 2' in text
    assert 'chaosproxy_added_latency_seconds_bucket{le="0.05"} 0' in text
    assert 'chaosproxy_added_latency_seconds_bucket{le="+Inf"} 1' in text
    assert "chaosproxy_added_latency_seconds_count 1" in text
    assert (
        'chaosproxy_scenario_info{scenario="inline",source="",seed="1",seed_source="scenario"} 1'
        in text
    )


def test_errors_404_405_413_and_bad_requests(proxy) -> None:
    assert api(proxy, "GET", "/nope").status_code == 404
    r = api(proxy, "DELETE", "/scenario")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, PUT"
    assert api(proxy, "GET", "/pause").status_code == 405
    big = b"rules: []\n" + b"#" * 1_000_001
    assert api(proxy, "PUT", "/scenario", data=big).status_code == 413

    def chunks():
        for _ in range(20):
            yield b"#" * 100_000

    assert api(proxy, "PUT", "/scenario", data=chunks()).status_code == 413
    with socket.create_connection(("127.0.0.1", int(proxy.admin_url.rsplit(":", 1)[1]))) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert api(proxy, "GET", "/scenario").json()["name"] == "start"


def test_browser_origins_and_foreign_host_names_are_refused(proxy) -> None:
    assert api(proxy, "GET", "/stats", headers={"Origin": "http://evil.example"}).status_code == 403
    r = api(proxy, "PUT", "/scenario", data=ERROR_418, headers={"Host": "evil.example:8475"})
    assert r.status_code == 403 and "loopback" in r.json()["error"]
    assert api(proxy, "GET", "/stats", headers={"Host": "localhost:1"}).status_code == 200
    assert api(proxy, "GET", "/scenario").json()["name"] == "start"


def test_token_is_required_on_every_call_but_the_bare_health_check(make_proxy) -> None:
    proxy = make_proxy(admin=True, admin_token="s3cret")
    for method, path in [("GET", "/scenario"), ("GET", "/metrics"), ("POST", "/reset")]:
        assert api(proxy, method, path).status_code == 401, path
    # a probe cannot carry a Secret: /healthz answers it with the status word only
    bare = api(proxy, "GET", "/healthz")
    assert (bare.status_code, bare.json()) == (200, {"status": "ok"})
    full = api(proxy, "GET", "/healthz", headers={"Authorization": "Bearer s3cret"})
    assert {"scenario", "patches"} <= set(full.json())
    assert api(proxy, "GET", "/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = api(proxy, "GET", "/stats", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    # with a token, the Host header may name the machine
    ok = api(proxy, "GET", "/stats", headers={"Authorization": "Bearer s3cret", "Host": "box:1"})
    assert ok.status_code == 200


def test_non_loopback_admin_without_token_refuses_to_start(upstream) -> None:
    with pytest.raises(AdminConfigError, match="admin-token"):
        ChaosProxy(upstream=upstream.url, admin="0.0.0.0:0")


def test_keep_alive_and_curl(proxy) -> None:
    curl = require_tool("curl")
    host, port = proxy.admin_url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(3):  # one connection, several calls
        conn.request("GET", "/healthz")
        assert json.loads(conn.getresponse().read())["status"] == "ok"
    conn.close()
    out = subprocess.run(
        [curl, "-s", "-X", "PUT", "--data-binary", ERROR_418, f"{proxy.admin_url}/scenario"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(out.stdout)["rules"][0]["name"] == "teapot"


def test_curl_put_of_a_large_file_does_not_wait_for_100_continue(proxy, tmp_path) -> None:
    curl = require_tool("curl")
    big = tmp_path / "big.yaml"
    big.write_text("# " + "padding " * 500 + "\n" + ERROR_418)
    out = subprocess.run(
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-X", "PUT",
         "-H", "Expect: 100-continue", "--data-binary", f"@{big}", f"{proxy.admin_url}/scenario"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    code, seconds = out.stdout.split()
    assert code == "200" and float(seconds) < 0.9  # curl waits 1 s when not told to go on


def test_ttl_reverts_to_passthrough(make_proxy) -> None:
    proxy = make_proxy(admin=True)
    body = "ttl: 1s\nrules: [{fault: {type: error, status: 503}}]\n"
    assert api(proxy, "PUT", "/scenario", data=body).json()["expires_in"] <= 1.0
    assert requests.get(f"{proxy.url}/x").status_code == 503
    wait_until(lambda: api(proxy, "GET", "/scenario").json()["name"] == "passthrough", timeout=10)
    assert requests.get(f"{proxy.url}/x").status_code == 200


@pytest.mark.e2e
def test_explain_against_the_running_proxy_sees_its_counters(make_proxy) -> None:
    proxy = make_proxy(
        {"seed": 2, "rules": [{"name": "second", "every": 2, "fault": {"type": "error"}}]},
        admin=True,
    )
    ask = {"method": "GET", "url": "http://up/x", "headers": {"X-A": "1"}}
    first = api(proxy, "POST", "/explain", json=ask).json()
    assert first["fires"] is None and "not its turn" in first["verdicts"][0]["reason"]
    requests.get(f"{proxy.url}/x")
    second = api(proxy, "POST", "/explain", json=ask).json()
    assert second["fires"] == "second" and second["seed"] == 2
    assert api(proxy, "GET", "/stats").json()["requests"] == 1  # explaining changes nothing
    assert api(proxy, "POST", "/explain", data="{}").status_code == 400
    out = subprocess.run(
        [str(Path(sys.executable).with_name("chaosproxy")), "explain", "--admin", proxy.admin_url,
         "GET", "http://up/x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "against inline (running proxy, no file, seed 2)" in out.stdout
    assert "FIRES second [error 500]" in out.stdout
