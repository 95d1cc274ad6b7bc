"""The seam's ALPN choice (proxy_addons/_internals/h2alpn.py): h2 for a client that offers
it unless something else decided, and h2 first to the upstream of an h2 client. The wire
behaviour is tested in tests/integration/test_h2_wire.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from chaosproxy.proxy_addons._internals import h2alpn


class SSLConn:
    def __init__(self, app_data: Any) -> None:
        self.app_data = app_data

    def get_app_data(self) -> Any:
        return self.app_data


def client_start(offers: tuple[bytes, ...], client_alpn: Any = None, server_alpn: Any = None):
    app_data = {"client_alpn": client_alpn, "server_alpn": server_alpn, "http2": True}
    conn = SimpleNamespace(alpn_offers=offers)
    return SimpleNamespace(conn=conn, ssl_conn=SSLConn(app_data)), app_data


@pytest.mark.parametrize("offers", [(b"http/1.1", b"h2"), (b"h2", b"http/1.1"), (b"h2",)])
def test_a_client_offering_h2_gets_it_in_any_order(offers: tuple[bytes, ...]) -> None:
    start, app_data = client_start(offers)
    assert h2alpn.prefer_h2(start, http2=True)
    assert app_data["client_alpn"] == b"h2"


@pytest.mark.parametrize(
    ("offers", "client_alpn", "server_alpn", "http2"),
    [
        ((b"http/1.1",), None, None, True),  # no h2 offered
        ((), None, None, True),  # no ALPN at all
        ((b"http/1.1", b"h2"), b"http/1.1", None, True),  # forced (secure web proxy)
        ((b"http/1.1", b"h2"), None, b"http/1.1", True),  # mirrors an upstream made first
        ((b"http/1.1", b"h2"), None, None, False),  # --set http2=false
    ],
)
def test_the_choice_is_left_alone(
    offers: tuple[bytes, ...], client_alpn: Any, server_alpn: Any, http2: bool
) -> None:
    start, app_data = client_start(offers, client_alpn, server_alpn)
    assert not h2alpn.prefer_h2(start, http2=http2)
    assert app_data["client_alpn"] == client_alpn


def test_an_unknown_app_data_shape_is_left_alone() -> None:
    start = SimpleNamespace(conn=SimpleNamespace(alpn_offers=(b"h2",)), ssl_conn=SSLConn(None))
    assert not h2alpn.prefer_h2(start, http2=True)


def server_start(client_alpn: Any, offers: tuple[bytes, ...] = ()) -> Any:
    server = SimpleNamespace(alpn_offers=offers)
    client = SimpleNamespace(alpn=client_alpn)
    return SimpleNamespace(conn=server, context=SimpleNamespace(client=client))


def test_the_upstream_of_an_h2_client_is_offered_h2_then_http1() -> None:
    start = server_start(b"h2")
    assert h2alpn.offer_h2(start, http2=True)
    assert start.conn.alpn_offers == (b"h2", b"http/1.1")


@pytest.mark.parametrize(
    ("client_alpn", "offers", "http2"),
    [(b"http/1.1", (), True), (None, (), True), (b"h2", (b"h2",), True), (b"h2", (), False)],
)
def test_other_upstream_offers_are_mitmproxys(
    client_alpn: Any, offers: tuple[bytes, ...], http2: bool
) -> None:
    start = server_start(client_alpn, offers)
    assert not h2alpn.offer_h2(start, http2=http2)
    assert start.conn.alpn_offers == offers


def test_its_target_is_there() -> None:
    assert h2alpn.check() is None
