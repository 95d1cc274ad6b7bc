"""The arrival clock: when a request really arrived at the proxy (delays count from there).

mitmproxy stamps a request when it has parsed its head, which under load can be well
after its bytes came in: a burst of new connections is set up one after the other before
any of their requests is read. When the whole head of a plain HTTP/1 connection's first
request already waited as the connection was set up, the moment the kernel received it is
the arrival, or where the kernel cannot say, that set-up (the request was there by then,
so no delay comes out shorter than asked from the client's point of view).
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http

from chaosproxy.proxy_addons._internals.receivetimes import KernelStamps, arrival_of


class ArrivalClock:
    """Arrival times of the requests whose head waited as their connection was set up."""

    def __init__(self) -> None:
        #: client id -> when its first request's whole head already waited as the
        #: connection was set up; flow id -> that time, for that first request
        self.waiting: dict[str, float] = {}
        self._arrivals: dict[str, float] = {}
        self._stamps = KernelStamps()

    def start(self) -> None:
        self._stamps.start()

    def stop(self) -> None:
        self._stamps.stop()

    def connected(self, client_id: str, handler: Any) -> None:
        """A client connected (``handler``: mitmproxy's handler of it, or None)."""
        if handler is not None:
            since = arrival_of(handler)
            if since is not None:
                self.waiting[client_id] = since

    def forget_client(self, client_id: str) -> None:
        """The client left, or the bytes that waited were a CONNECT."""
        self.waiting.pop(client_id, None)

    def note(self, flow: http.HTTPFlow) -> None:
        """Remember when a connection's first request really arrived (``requestheaders``)."""
        since = self.waiting.pop(flow.client_conn.id, None)
        request = flow.request
        if (
            since is not None
            and since < request.timestamp_start
            and not flow.client_conn.tls
            and request.http_version in ("HTTP/1.1", "HTTP/1.0")
        ):
            self._arrivals[flow.id] = since

    def arrival(self, flow: http.HTTPFlow) -> float:
        """When the request arrived at the proxy."""
        return self._arrivals.get(flow.id, flow.request.timestamp_start)

    def pop(self, flow: http.HTTPFlow) -> float:
        """:meth:`arrival`, forgetting the flow (it is finished)."""
        return self._arrivals.pop(flow.id, flow.request.timestamp_start)
