"""Clients that leave early: nothing stays open behind them, and every request the proxy
counted is in the decision log and the metrics too (issue 22, items 5 and 6)."""

from __future__ import annotations

import re
import socket

import requests

from tests.reliability.census import census, settled
from tests.reliability.rawwire import Blackhole
from tests.support import wait_until


def test_clients_leaving_a_throttled_request_before_the_head_close_both_relay_sockets(
    make_proxy,
) -> None:
    with Blackhole() as up:
        proxy = make_proxy(
            {
                "seed": 1,
                "rules": [
                    {
                        "name": "slow",
                        "match": {"path": "/slow"},
                        "fault": {"type": "throttle", "rate": "1KB/s"},
                    }
                ],
            },
            upstream=up.url,
        )
        # the relay listens from its first use on: start it, then take the baseline
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as first:
            first.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: up.open == 1, timeout=10)
        wait_until(lambda: up.open == 0 and proxy.addon.relay.active == 0, timeout=10)
        wait_until(lambda: census(proxy)["connections"] == 0, timeout=10)
        baseline = census(proxy)
        socks = []
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        wait_until(lambda: up.open == 30, timeout=15)  # every request reached the upstream
        assert census(proxy)["fds"] >= baseline["fds"] + 60
        for sock in socks:
            sock.close()
        after = wait_until(lambda: settled(proxy, baseline), timeout=10)
        assert after["relay"] == 0
        wait_until(lambda: up.open == 0, timeout=10)  # relay -> upstream closed too
        stats = proxy.stats
        assert stats["requests"] == 31
        assert len(proxy.decisions) == 31
        assert {d.outcome for d in proxy.decisions} == {"client_disconnected"}


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}{{{re.escape(want)}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_clients_leaving_mid_upload_are_counted_everywhere_rule_by_rule(make_proxy) -> None:
    proxy = make_proxy(
        {
            "seed": 1,
            "rules": [
                {
                    "name": "upload-slow",
                    "match": {"path": "/upload/slow"},
                    "fault": {"type": "latency", "delay": "10ms"},
                },
                {"name": "never", "match": {"path": "/never"}, "fault": {"type": "error"}},
            ],
        },
        admin=True,
    )
    assert requests.post(f"{proxy.url}/echo", data=b"ok", timeout=10).status_code == 200
    socks = []
    for i in range(12):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        path = "/upload/slow" if i % 2 else "/echo"  # a rule fires / passed through
        framing = "Transfer-Encoding: chunked" if i % 3 == 0 else "Content-Length: 5000000"
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
        sock.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n" if i % 3 == 0 else b"x" * 200_000)
        socks.append(sock)
    wait_until(lambda: proxy.stats["requests"] == 13, timeout=10)  # each decided from its head
    for sock in socks:
        sock.close()
    wait_until(lambda: census(proxy)["connections"] == 0, timeout=10)
    wait_until(lambda: len(proxy.decisions) == 13, timeout=10)
    admin = proxy.admin_url
    stats = requests.get(f"{admin}/stats", timeout=10).json()
    decisions = requests.get(f"{admin}/decisions", timeout=10).json()
    metrics = requests.get(f"{admin}/metrics", timeout=10).text
    assert (
        stats["requests"] == len(decisions) == _metric(metrics, "chaosproxy_requests_total") == 13
    )
    for rule in stats["rules"]:
        logged = [d for d in decisions if d["rule"] == rule["name"]]
        assert rule["injected"] == len(logged)
        assert rule["injected"] == _metric(
            metrics,
            "chaosproxy_faults_injected_total",
            rule=rule["name"],
            type=rule["fault"].split()[0],
        )
    assert {r["name"]: r["injected"] for r in stats["rules"]} == {"upload-slow": 6, "never": 0}
    left = [d for d in decisions if d["outcome"] == "client_disconnected"]
    assert len(left) == 12
    assert _metric(metrics, "chaosproxy_outcomes_total", outcome="client_disconnected") == 12
