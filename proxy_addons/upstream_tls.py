"""TLS to the upstream for relayed (throttled) flows, verified as mitmproxy would."""

from __future__ import annotations

import ssl
from typing import Any


class UpstreamTLS:
    """One client context per set of mitmproxy TLS options (made again when they change)."""

    def __init__(self) -> None:
        self._cached: tuple[tuple[str | None, str | None, bool], ssl.SSLContext] | None = None

    def context(self, opts: Any) -> ssl.SSLContext:
        """``ssl_insecure`` and ``ssl_verify_upstream_trusted_ca`` / ``..._confdir`` of
        mitmproxy's options ``opts`` (None: defaults) apply."""
        settings = (
            getattr(opts, "ssl_verify_upstream_trusted_ca", None) or None,
            getattr(opts, "ssl_verify_upstream_trusted_confdir", None) or None,
            bool(getattr(opts, "ssl_insecure", False)),
        )
        if self._cached is None or self._cached[0] != settings:
            cafile, capath, insecure = settings
            ctx = ssl.create_default_context(cafile=cafile, capath=capath)
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            self._cached = (settings, ctx)
        return self._cached[1]
