"""HTTP/2 for every client that offers it, while upstream connections stay lazy.

mitmproxy chooses the client's ALPN protocol in ``tlsconfig.alpn_select_callback``: the
upstream's, when its connection is up (``connection_strategy=eager`` connects first), else
the client's first choice. chaosproxy connects lazily (faults answer while the upstream is
down, and a request a fault answers never opens a connection), so at the client's
handshake there is no upstream protocol to copy and the client's order decides: httpx
offers ``http/1.1, h2`` and got HTTP/1.1; with ``http1=False`` it speaks HTTP/2 anyway
and mitmproxy, reading HTTP/1, dropped it ("Server disconnected").

With :func:`install`, a client that offers ``h2`` gets ``h2`` when no upstream connection
decided otherwise, and the upstream is then offered ``h2, http/1.1`` (h2 first): an
HTTP/2 upstream speaks HTTP/2 end to end, as with plain mitmdump; one that speaks only
HTTP/1.1 still serves, mitmproxy translating (mitmdump would have given the client
HTTP/1.1 there). Clients that do not offer h2, an upstream connection made before the
client's handshake, ``http2=false`` and the secure web proxy's HTTP/1 are left as they are.

It wraps ``TlsConfig.tls_start_client`` (after it: sets ``client_alpn`` in the
``AppData`` that mitmproxy's ALPN callback reads) and ``TlsConfig.tls_start_server``
(before it: sets ``server.alpn_offers``, which it then keeps). Internal API, the same in
mitmproxy 11 and 12; without it, mitmproxy's own choice stays.
"""

from __future__ import annotations

import inspect
from typing import Any

from chaosproxy.proxy_addons._internals import Patch, missing_attributes

H2 = b"h2"
HTTP1 = b"http/1.1"
#: what the upstream is offered when the client got h2
UPSTREAM_OFFERS = (H2, HTTP1)

_installed: list[bool] = []


def prefer_h2(tls_start: Any, http2: bool) -> bool:
    """After mitmproxy set up the client's TLS: choose h2 when the client offers it and
    nothing else decided. True when it did."""
    client = tls_start.conn
    ssl_conn = tls_start.ssl_conn
    if not http2 or ssl_conn is None or H2 not in (client.alpn_offers or ()):
        return False
    app_data = ssl_conn.get_app_data()
    if not isinstance(app_data, dict):
        return False
    if app_data.get("client_alpn") is not None or app_data.get("server_alpn") is not None:
        return False  # forced (secure web proxy: HTTP/1), or mirroring the upstream's
    app_data["client_alpn"] = H2
    return True


def offer_h2(tls_start: Any, http2: bool) -> bool:
    """Before mitmproxy sets up TLS to the upstream: when the client speaks h2, offer the
    upstream h2 first and HTTP/1.1 after it. True when it did."""
    server, client = tls_start.conn, tls_start.context.client
    if not http2 or server.alpn_offers or client.alpn != H2:
        return False
    server.alpn_offers = UPSTREAM_OFFERS
    return True


def check() -> str | None:
    from mitmproxy.addons import tlsconfig

    problem = missing_attributes(tlsconfig, "TlsConfig", "alpn_select_callback", "AppData")
    if problem:
        return problem
    if "client_alpn" not in getattr(tlsconfig.AppData, "__annotations__", {}):
        return "tlsconfig.AppData has no client_alpn"
    callback = inspect.getsource(tlsconfig.alpn_select_callback)
    if 'app_data["client_alpn"]' not in callback or "get_app_data" not in callback:
        return "tlsconfig.alpn_select_callback no longer reads client_alpn from its AppData"
    for name in ("tls_start_client", "tls_start_server"):
        method = getattr(tlsconfig.TlsConfig, name, None)
        if method is None or list(inspect.signature(method).parameters) != ["self", "tls_start"]:
            return f"TlsConfig.{name}(self, tls_start) changed"
    return None


def install() -> bool:
    from mitmproxy import ctx
    from mitmproxy.addons import tlsconfig

    cls = tlsconfig.TlsConfig
    if getattr(cls.tls_start_client, "_chaosproxy", False):
        return False
    start_client, start_server = cls.tls_start_client, cls.tls_start_server

    def tls_start_client(self: Any, tls_start: Any) -> None:
        start_client(self, tls_start)
        prefer_h2(tls_start, bool(ctx.options.http2))

    def tls_start_server(self: Any, tls_start: Any) -> None:
        offer_h2(tls_start, bool(ctx.options.http2))
        start_server(self, tls_start)

    tls_start_client._chaosproxy = True  # type: ignore[attr-defined]
    cls.tls_start_client = tls_start_client  # type: ignore[method-assign]
    cls.tls_start_server = tls_start_server  # type: ignore[method-assign]
    _installed.append(True)
    return True


PATCH = Patch(
    name="h2_for_h2_clients",
    target="mitmproxy.addons.tlsconfig.TlsConfig.tls_start_client / tls_start_server "
    "(the AppData its alpn_select_callback reads)",
    check=lambda: None if _installed else check(),
    apply=lambda _: install(),
    fallback="a client gets its first ALPN choice (httpx: HTTP/1.1; http1=False fails)",
)
