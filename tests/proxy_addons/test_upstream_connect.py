"""What a reverse-mode client's TLS handshake is decided on
(proxy_addons/upstream_connect.py); the faults on the wire are tested in
tests/integration/test_connect_faults_wire.py."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import certs, connection
from mitmproxy.proxy import mode_specs
from mitmproxy.proxy.context import Context
from mitmproxy.test import taddons

from chaosproxy.proxy_addons.upstream_connect import _make_certificate, handshake_view


def context(mode: str, sni: str | None, upstream: tuple[str, int] | None) -> Context:
    client = connection.Client(
        peername=("127.0.0.1", 50000),
        sockname=("127.0.0.1", 8443),
        timestamp_start=0.0,
        proxy_mode=mode_specs.ProxyMode.parse(mode),
    )
    client.sni = sni
    with taddons.context() as tctx:
        ctx = Context(client, tctx.options)
    ctx.server = connection.Server(address=upstream)
    return ctx


def test_a_reverse_handshake_is_decided_on_the_sni_name_it_asks_for() -> None:
    mode = "reverse:https://orders.internal:9443"
    found = handshake_view(context(mode, "login.example", ("orders.internal", 9443)), {})
    assert found is not None
    view, address = found
    assert (view.method, view.host, view.url) == (
        "TLS",
        "login.example",
        "https://login.example:9443",
    )
    assert (view.point, view.upstream) == ("handshake", None)
    assert address == ("login.example", 9443)


def test_without_sni_the_upstreams_host_and_the_listeners_upstream_name() -> None:
    ctx = context("reverse:https://10.0.0.5:9443@8443", None, ("10.0.0.5", 9443))
    found = handshake_view(ctx, {ctx.client.proxy_mode.full_spec: "orders"})
    assert found is not None
    view, address = found
    assert (view.host, view.upstream, address) == ("10.0.0.5", "orders", ("10.0.0.5", 9443))


def test_a_forward_proxy_or_an_unknown_upstream_decides_no_handshake_here() -> None:
    assert handshake_view(context("regular", "login.example", ("login.example", 443)), {}) is None
    assert handshake_view(context("reverse:https://a.example", "a.example", None), {}) is None


def _validity(cert: Any) -> tuple[datetime.datetime, datetime.datetime]:
    c = cert.to_cryptography()
    return c.not_valid_before_utc, c.not_valid_after_utc


def test_tls_failure_certificates_are_expired_by_the_proxys_ca_or_self_signed(
    tmp_path: Path,
) -> None:
    store = certs.CertStore.from_store(tmp_path, "mitmproxy", 1024)
    now = datetime.datetime.now(datetime.UTC)
    expired, _ = _make_certificate("login.example", "expired", store)
    assert _validity(expired)[1] < now
    ca = store.default_ca.to_pyopenssl().to_cryptography()
    assert expired.to_cryptography().issuer == ca.subject
    self_signed, _ = _make_certificate("10.0.0.5", "self_signed", store)
    c = self_signed.to_cryptography()
    assert c.issuer == c.subject and _validity(self_signed)[0] < now < _validity(self_signed)[1]


def test_without_mitmproxys_ca_an_expired_certificate_is_self_signed_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expired, _ = _make_certificate("login.example", "expired", None)
    c = expired.to_cryptography()
    assert c.issuer == c.subject and _validity(expired)[1] < datetime.datetime.now(datetime.UTC)
    assert "login.example's expired certificate is self-signed" in caplog.text
