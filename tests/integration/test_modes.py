"""Reverse mode to several named upstreams, and forward mode for HTTP_PROXY clients."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chaosproxy.proxy_addons.runner import Upstream
from chaosproxy.testing.api import ChaosProxy
from tests.support import UpstreamServer, free_port, running_upstream, self_signed, served


def test_forward_mode_http(make_proxy, upstream: UpstreamServer) -> None:
    proxy = make_proxy(
        {"rules": [{"match": {"path": "/v1/*"}, "fault": {"type": "error", "status": 503}}]},
        forward=True,
    )
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"http": proxy.url, "https": proxy.url}
    assert session.get(f"{upstream.url}/v1/x").status_code == 503
    r = session.get(f"{upstream.url}/echo")
    assert r.status_code == 200 and r.json()["path"] == "/echo"


@contextlib.contextmanager
def tls_upstream(tmp_path: Path) -> Iterator[str]:
    """A self-signed HTTPS upstream on 127.0.0.1 (certificate made here, not committed)."""
    cert_path, key_path = self_signed(tmp_path)
    server = UpstreamServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with served(server):
        yield f"https://127.0.0.1:{server.server_address[1]}"


@contextlib.contextmanager
def https_behind_forward_proxy(
    make_proxy, tmp_path: Path, scenario: dict
) -> Iterator[tuple[str, ChaosProxy, str]]:
    """A self-signed HTTPS upstream and a forward chaos proxy for it: (the upstream's URL,
    the proxy, the CA file a client trusts to accept the proxy's certificates)."""
    confdir = tmp_path / "mitm"
    with tls_upstream(tmp_path) as https_url:
        proxy = make_proxy(scenario, forward=True, confdir=str(confdir), insecure=True)
        yield https_url, proxy, str(confdir / "mitmproxy-ca-cert.pem")


def test_forward_mode_https_through_mitmproxys_ca(make_proxy, tmp_path: Path) -> None:
    confdir = tmp_path / "mitm"
    with tls_upstream(tmp_path) as https_url:
        proxy = make_proxy(
            {"rules": [{"match": {"path": "/broken"}, "fault": {"type": "error", "status": 502}}]},
            forward=True,
            confdir=str(confdir),
            insecure=True,  # the upstream's certificate is self-signed
        )
        ca = confdir / "mitmproxy-ca-cert.pem"
        assert ca.is_file()
        session = requests.Session()
        session.trust_env = False
        session.proxies = {"https": proxy.url}
        session.verify = str(ca)  # what REQUESTS_CA_BUNDLE does for a whole process
        assert session.get(f"{https_url}/broken").status_code == 502
        r = session.get(f"{https_url}/echo")
        assert r.status_code == 200 and r.json()["path"] == "/echo"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{https_url}/echo", proxies={"https": proxy.url}, verify=True)


def test_several_named_upstreams_match_by_name() -> None:
    with running_upstream() as weather, running_upstream() as billing:
        w_port, b_port = free_port(), free_port()
        with ChaosProxy(
            upstream=[f"weather={weather.url}@{w_port}", f"billing={billing.url}@{b_port}"],
            scenario={
                "rules": [{"match": {"host": "billing"}, "fault": {"type": "error", "status": 500}}]
            },
        ):
            assert requests.get(f"http://127.0.0.1:{w_port}/echo").status_code == 200
            assert requests.get(f"http://127.0.0.1:{b_port}/echo").status_code == 500
            assert len(weather.received) == 1 and len(billing.received) == 0


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("ftp://x", "not an http:// or https:// URL"),
        ("http://x/path", "origin only"),
        ("weather=http://x", "NAME=URL@PORT"),
        ("weather=http://x@99999", "out of range"),
        ("bad name=http://x@80", "letters, digits"),
        ("http://x:notaport", "Port could not be cast"),
    ],
)
def test_upstream_spec_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Upstream.parse(text)
