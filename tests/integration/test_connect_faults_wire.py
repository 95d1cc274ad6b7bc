"""Connect-time faults on the wire: ``connect_refused``, ``dns_failure``, ``connect_delay``
and ``tls_failure``, with requests, httpx and curl, in forward and reverse mode; none of
them lets an upstream connection open (the early connections of ``chaosproxy run`` too).
"""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from chaosproxy.proxy_addons._internals.clientsock import connection_handlers
from chaosproxy.testing.api import ChaosProxy
from tests.h2upstream import running_h2_upstream
from tests.integration.test_warmup import Proxy, Upstream, ask
from tests.support import UpstreamServer, free_port, require_tool, wait_until

FORWARD = {
    "rules": [
        {"match": {"host": "refused.test"}, "fault": {"type": "connect_refused"}},
        {"match": {"host": "gone.test"}, "fault": {"type": "dns_failure"}},
        {"match": {"host": "far.test"}, "fault": {"type": "connect_delay", "delay": "300ms"}},
        {"match": {"host": "alert.test"}, "fault": {"type": "tls_failure"}},
        {"match": {"host": "expired.test"}, "fault": {"type": "tls_failure", "mode": "expired"}},
        {
            "match": {"host": "selfsigned.test"},
            "fault": {"type": "tls_failure", "mode": "self_signed"},
        },
    ]
}


def curl(*args: str) -> tuple[int, str, str]:
    """curl's exit code, ``%{http_code}`` and its error line."""
    exe = require_tool("curl")
    out = subprocess.run(
        [exe, "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.returncode, out.stdout, out.stderr


@pytest.fixture(scope="module")
def forward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChaosProxy, str]]:
    confdir = tmp_path_factory.mktemp("fwd") / "mitm"
    with ChaosProxy(
        scenario=FORWARD, forward=True, confdir=str(confdir), insecure=True, admin=True
    ) as p:
        yield p, str(confdir / "mitmproxy-ca-cert.pem")


def settled(proxy: ChaosProxy) -> None:
    """Wait until the proxy has closed every client connection (and logged why), so that
    nothing it says about a failed handshake outlives the test."""
    wait_until(lambda: not connection_handlers(proxy._master), timeout=10)


def session(proxy: ChaosProxy, ca: str | None = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"http": proxy.url, "https": proxy.url}
    if ca:
        s.verify = ca
    return s


def test_forward_connect_refused_and_dns_failure_refuse_the_tunnel(forward) -> None:
    proxy, ca = forward
    for host in ("refused.test", "gone.test"):
        code, status, err = curl("-x", proxy.url, "--cacert", ca, f"https://{host}/x")
        assert code == 56 and "CONNECT tunnel failed, response 502" in err, err
        with session(proxy, ca) as s, pytest.raises(requests.exceptions.ProxyError):
            s.get(f"https://{host}/x", timeout=10)
        with (
            httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=ca)) as c,
            pytest.raises(httpx.ProxyError),
        ):
            c.get(f"https://{host}/x")
    records = [d for d in proxy.decisions if d.method == "CONNECT"]
    assert {(d.url, d.rule, d.outcome, d.status) for d in records} >= {
        ("refused.test:443", "connect_refused-1", "response", 502),
        ("gone.test:443", "dns_failure-2", "response", 502),
    }


def test_forward_plain_http_gets_mitmproxys_502(forward) -> None:
    proxy, _ = forward
    with session(proxy) as s:
        refused = s.get("http://refused.test/x", timeout=10)
        gone = s.get("http://gone.test/x", timeout=10)
    for r in (refused, gone):
        assert r.status_code == 502 and r.headers["content-type"] == "text/html"
        assert r.headers["server"].startswith("mitmproxy")
    assert "[Errno 111] Connect call failed (&#x27;refused.test&#x27;, 80)" in refused.text
    assert "[Errno -2] Name or service not known" in gone.text


def test_forward_connect_delay_delays_the_tunnel(forward) -> None:
    proxy, ca = forward
    exe = require_tool("curl")
    out = subprocess.run(
        [exe, "-s", "-o", "/dev/null", "-w", "%{time_appconnect}", "-x", proxy.url]
        + ["--cacert", ca, "--connect-timeout", "10", "https://far.test/x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert 0.3 <= float(out.stdout) < 0.6 * 2, out  # CONNECT answered after the delay
    [record] = [d for d in proxy.decisions if d.url == "far.test:443"]
    assert record.outcome == "response" and record.status == 200
    assert record.added_latency >= 0.29


@pytest.mark.parametrize(
    ("host", "curl_exit", "message"),
    [
        ("alert.test", 35, "alert handshake failure"),
        ("expired.test", 60, "certificate has expired"),
        ("selfsigned.test", 60, "self-signed certificate"),
    ],
)
def test_forward_tls_failure_fails_the_tunnels_handshake(
    forward, host: str, curl_exit: int, message: str
) -> None:
    proxy, ca = forward
    code, _, err = curl("-x", proxy.url, "--cacert", ca, f"https://{host}/x")
    assert code == curl_exit and message in err, err
    with session(proxy, ca) as s, pytest.raises(requests.exceptions.SSLError):
        s.get(f"https://{host}/x", timeout=10)
    assert any(d.url == f"{host}:443" and d.outcome == "tls_failed" for d in proxy.decisions)
    metrics = requests.get(f"{proxy.admin_url}/metrics", timeout=10).text
    assert 'chaosproxy_faults_injected_total{rule="' in metrics
    assert 'type="tls_failure"' in metrics and 'outcome="tls_failed"' in metrics
    settled(proxy)


def test_reverse_connect_refused_answers_as_a_refused_upstream(upstream: UpstreamServer) -> None:
    dead = free_port()
    with ChaosProxy(f"http://127.0.0.1:{dead}") as real:
        refused = requests.get(f"{real.url}/x", timeout=10)
    scenario = {"rules": [{"fault": {"type": "connect_refused"}}]}
    before = len(upstream.received)
    with ChaosProxy(upstream.url, scenario=scenario) as proxy:
        faked = requests.get(f"{proxy.url}/x", timeout=10)
        port = proxy.port
    assert len(upstream.received) == before  # the upstream saw nothing
    assert (faked.status_code, faked.headers) == (refused.status_code, refused.headers)
    upstream_port = upstream.server_address[1]
    assert faked.text == refused.text.replace(str(dead), str(upstream_port)), port


def test_reverse_connect_delay_opens_the_connection_after_it(
    upstream: UpstreamServer,
) -> None:
    scenario = {"rules": [{"fault": {"type": "connect_delay", "delay": "300ms"}}]}
    with ChaosProxy(upstream.url, scenario=scenario) as proxy:
        started = time.monotonic()
        r = requests.get(f"{proxy.url}/echo", timeout=10)
        took = time.monotonic() - started
    assert r.status_code == 200 and 0.3 <= took < 0.6 * 2


def test_early_upstream_connections_never_preempt_connect_faults(tmp_path: Path) -> None:
    """``chaosproxy run`` opens a delayed request's upstream connection during its wait;
    a connect fault on the same client connection still finds none open for it, and a
    connect_delay's connection opens only after its delay."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "rules:\n"
        "  - {name: slow, match: {path: /slow}, fault: {type: latency, delay: 300ms}}\n"
        "  - {name: refuse, times: 1, fault: {type: connect_refused}}\n"
        "  - {name: far, fault: {type: connect_delay, delay: 300ms}}\n"
    )
    raw = Upstream()
    proxy = Proxy(raw.port, scenario)
    try:
        with proxy.connect() as sock:
            assert ask(sock, "/slow").startswith(b"HTTP/1.1 200")  # opened early: 1 connection
        with proxy.connect() as sock:
            sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")  # refused
            assert sock.recv(65536).startswith(b"HTTP/1.1 502")
        with proxy.connect() as sock:
            asked = time.monotonic()
            assert ask(sock, "/b").startswith(b"HTTP/1.1 200")  # far
    finally:
        proxy.stop()
        raw.stop()
    slow, far = raw.connections  # none for the refused request
    assert [p for _, p in slow["requests"]] == ["/slow"]
    assert [p for _, p in far["requests"]] == ["/b"] and far["opened"] - asked >= 0.29


@pytest.fixture(scope="module")
def reverse_tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, ChaosProxy]]:
    """A reverse proxy to an HTTPS upstream whose client handshakes fail by SNI name."""
    tmp = tmp_path_factory.mktemp("rev")
    confdir = tmp / "mitm"
    scenario = {
        "rules": [
            {"match": {"host": "alert.test"}, "fault": {"type": "tls_failure"}},
            {
                "match": {"host": "expired.test"},
                "fault": {"type": "tls_failure", "mode": "expired"},
            },
        ]
    }
    with (
        running_h2_upstream(tmp) as up,
        ChaosProxy(up.url, scenario=scenario, confdir=str(confdir), insecure=True) as proxy,
    ):
        yield f"127.0.0.1:{proxy.port}", str(confdir / "mitmproxy-ca-cert.pem"), proxy


@pytest.mark.parametrize(
    ("host", "curl_exit", "message"),
    [("alert.test", 35, "alert handshake failure"), ("expired.test", 60, "has expired")],
)
def test_reverse_tls_failure_by_sni(reverse_tls, host: str, curl_exit: int, message: str) -> None:
    address, ca, proxy = reverse_tls
    port = address.split(":")[1]
    by_name = ("--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/echo")
    code, _, err = curl("--cacert", ca, *by_name)
    assert code == curl_exit and message in err, err
    assert any(
        d.method == "TLS" and d.host == host and d.outcome == "tls_failed" for d in proxy.decisions
    )
    # other names go on; so does a client that does not verify (certificate modes)
    code, status, _ = curl("--cacert", ca, f"https://{address}/echo")
    assert code == 0 and status == "200"
    if curl_exit == 60:
        code, status, _ = curl("-k", *by_name)
        assert code == 0 and status == "200"
    settled(proxy)
