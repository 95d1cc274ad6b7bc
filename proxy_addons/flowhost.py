"""What a flow's faults reach through their :class:`~.wire.FlowWire`, besides the flow.

The relay that paces throttled answers, the waits a client's leaving ends, the arrival
clock, TLS to the upstream, and mitmproxy's connection handlers (internal API). It
implements :class:`~.wire.WireHost`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from mitmproxy import http

from chaosproxy.proxy_addons import _internals
from chaosproxy.proxy_addons._internals import clientsock, warmup
from chaosproxy.proxy_addons.arrivals import ArrivalClock
from chaosproxy.proxy_addons.relay import Relay
from chaosproxy.proxy_addons.upstream_connect import Handshakes
from chaosproxy.proxy_addons.upstream_tls import UpstreamTLS
from chaosproxy.proxy_addons.waits import ClientWaits


class FlowHost:
    """One proxy's relay, waits, arrival clock and upstream TLS; ``master`` and ``loop`` are
    set once mitmproxy loads the addon and runs."""

    def __init__(self) -> None:
        #: loopback relay that paces throttled answers (listens only once one is needed)
        self.relay = Relay()
        self.waits = ClientWaits()
        self.arrivals = ArrivalClock()
        self.master: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tls = UpstreamTLS()
        #: handshake faults (``tls_failure``) decided for clients, until their handshake
        self.handshakes = Handshakes(self.connection_handler)

    def attach(self, master: Any) -> None:
        """mitmproxy loaded the addon: its master, and the seam's patches for the addon
        (the client sockets behind ``abort: reset`` and the arrival clock)."""
        self.master = master
        _internals.apply(_internals.ADDON)

    def client_left(self, client_id: str) -> None:
        """The client disconnected: its arrival, early upstream connections and waits go."""
        self.arrivals.forget_client(client_id)
        warmup.discard(client_id)
        self.waits.client_left(client_id)
        self.handshakes.client_left(client_id)

    def arrival(self, flow: http.HTTPFlow) -> float:
        """When the request arrived at the proxy; delays count from here."""
        return self.arrivals.arrival(flow)

    async def wait_for_client(self, client_id: str, timeout: float | None) -> bool | None:
        """Wait ``timeout`` seconds (None: forever). True when the time passed, False when the
        client disconnected first, None when the proxy is stopping."""
        assert self.loop is not None
        return await self.waits.wait(self.loop, client_id, timeout)

    def upstream_ssl_context(self) -> ssl.SSLContext:
        """TLS to the upstream for relayed (throttled) flows, verified as mitmproxy would."""
        return self._tls.context(self.master.options if self.master is not None else None)

    def connection_handler(self, client_id: str) -> Any:
        """mitmproxy's handler of a client connection (internal API), or None."""
        return clientsock.connection_handler(self.master, client_id)

    def close(self) -> None:
        """The proxy stops: end every wait, the relay and the kernel stamps."""
        self.waits.release_all()
        self.relay.close()
        self.arrivals.stop()
