"""HTTP/2 kept: a client that offers h2 gets h2 through the proxy, forward and reverse, to
an HTTPS upstream, whatever its ALPN order; faults and byte-identical passthrough hold.

The upstream (tests/h2upstream.py) speaks HTTP/2 and HTTP/1.1 and says which one each
request came in on. Run this file on Python 3.11 / mitmproxy 11 and 3.12 / mitmproxy 12.
"""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from chaosproxy.testing.api import ChaosProxy
from tests.h2upstream import H2Upstream, running_h2_upstream
from tests.support import body_bytes, free_port, require_tool

SCENARIO = {
    "rules": [
        {"match": {"path": "/fault/error"}, "fault": {"type": "error", "status": 503}},
        {"match": {"path": "/fault/latency"}, "fault": {"type": "latency", "delay": "300ms"}},
        {"match": {"path": "/fault/abort"}, "fault": {"type": "abort", "how": "reset"}},
        {
            "match": {"path": "/fault/truncate"},
            "fault": {"type": "malformed", "mode": "truncate", "keep": 0.5},
        },
        {"match": {"path": "/fault/json"}, "fault": {"type": "malformed", "mode": "invalid_json"}},
    ]
}

#: httpx settings that offer h2: its default order (http/1.1 first), and h2 alone
H2_CLIENTS = {"http2": {"http2": True}, "http2_only": {"http2": True, "http1": False}}


class Setup:
    def __init__(self, up: H2Upstream, forward: ChaosProxy, reverse: ChaosProxy, ca: str) -> None:
        self.up, self.forward, self.reverse, self.ca = up, forward, reverse, ca

    def client(self, mode: str, **kwargs: Any) -> tuple[httpx.Client, str]:
        """An httpx client for ``mode`` and the base URL it asks."""
        verify = trusting(self.ca)
        if mode == "forward":
            return httpx.Client(proxy=self.forward.url, verify=verify, **kwargs), self.up.url
        return httpx.Client(verify=verify, **kwargs), f"https://127.0.0.1:{self.reverse.port}"


def trusting(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


@pytest.fixture(scope="module")
def h2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("h2")
    confdir = str(tmp / "mitm")
    with (
        running_h2_upstream(tmp) as up,
        ChaosProxy(scenario=SCENARIO, forward=True, confdir=confdir, insecure=True) as fwd,
        ChaosProxy(up.url, scenario=SCENARIO, confdir=confdir, insecure=True) as rev,
    ):
        yield Setup(up, fwd, rev, str(Path(confdir) / "mitmproxy-ca-cert.pem"))


@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("settings", list(H2_CLIENTS))
def test_a_client_offering_h2_gets_h2_end_to_end(h2: Setup, mode: str, settings: str) -> None:
    client, base = h2.client(mode, **H2_CLIENTS[settings])
    with client:
        r = client.get(f"{base}/echo")
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert r.json()["protocol"] == "HTTP/2"  # and the upstream was asked over HTTP/2


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_curl_http2_gets_h2(h2: Setup, mode: str) -> None:
    curl = require_tool("curl")
    base = h2.up.url if mode == "forward" else f"https://127.0.0.1:{h2.reverse.port}"
    args = [curl, "-s", "--http2", "--cacert", h2.ca, "-w", "\n%{http_version}"]
    if mode == "forward":
        args += ["-x", h2.forward.url]
    out = subprocess.run([*args, f"{base}/echo"], capture_output=True, text=True, timeout=30)
    body, _, version = out.stdout.rpartition("\n")
    assert out.returncode == 0 and version == "2", out
    assert '"protocol": "HTTP/2"' in body


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_a_client_without_h2_keeps_http1(h2: Setup, mode: str) -> None:
    session = requests.Session()
    session.trust_env = False
    session.verify = h2.ca
    if mode == "forward":
        session.proxies = {"https": h2.forward.url}
        base = h2.up.url
    else:
        base = f"https://127.0.0.1:{h2.reverse.port}"
    r = session.get(f"{base}/echo", timeout=10)
    assert r.status_code == 200 and r.raw.version == 11
    assert r.json()["protocol"] == "HTTP/1.1"


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_passthrough_over_h2_is_byte_identical(h2: Setup, mode: str) -> None:
    client, base = h2.client(mode, http2=True)
    payload = body_bytes(150_000, seed=3)
    with client:
        got = client.get(f"{base}/bytes/300000")
        echoed = client.post(f"{base}/echo", content=payload)
    assert got.http_version == "HTTP/2" and got.content == body_bytes(300_000)
    assert echoed.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert echoed.json()["protocol"] == "HTTP/2"


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_faults_hold_over_h2(h2: Setup, mode: str) -> None:
    client, base = h2.client(mode, http2=True)
    with client:
        error = client.get(f"{base}/fault/error")
        assert error.http_version == "HTTP/2" and error.status_code == 503
        assert error.json()["injected_by"] == "chaosproxy"

        started = time.monotonic()
        slow = client.get(f"{base}/fault/latency")
        assert slow.status_code == 200 and 0.3 <= time.monotonic() - started < 0.6 * 2

        broken = client.get(f"{base}/fault/json")
        assert broken.status_code == 200
        with pytest.raises(ValueError):
            broken.json()

        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{base}/fault/abort")
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{base}/fault/truncate")

        after = client.get(f"{base}/echo")  # a reset stream leaves the connection usable
        assert after.status_code == 200 and after.http_version == "HTTP/2"


def test_an_http1_only_upstream_serves_h2_clients(tmp_path: Path) -> None:
    confdir = str(tmp_path / "mitm")
    ca = str(Path(confdir) / "mitmproxy-ca-cert.pem")
    with (
        running_h2_upstream(tmp_path, alpn=("http/1.1",)) as up,
        ChaosProxy(up.url, confdir=confdir, insecure=True) as proxy,
        httpx.Client(verify=trusting(ca), http2=True, http1=False) as client,
    ):
        r = client.get(f"https://127.0.0.1:{proxy.port}/echo")
    assert r.http_version == "HTTP/2" and r.json()["protocol"] == "HTTP/1.1"


def test_an_h2_client_gets_faults_while_the_upstream_is_down(tmp_path: Path) -> None:
    confdir = str(tmp_path / "mitm")
    ca = str(Path(confdir) / "mitmproxy-ca-cert.pem")
    dead = f"https://127.0.0.1:{free_port()}"  # nothing listens: connections are lazy
    scenario = {"rules": [{"fault": {"type": "error", "status": 503}}]}
    with (
        ChaosProxy(dead, scenario=scenario, confdir=confdir, insecure=True) as proxy,
        httpx.Client(verify=trusting(ca), http2=True) as client,
    ):
        r = client.get(f"https://127.0.0.1:{proxy.port}/x")
    assert r.http_version == "HTTP/2" and r.status_code == 503
