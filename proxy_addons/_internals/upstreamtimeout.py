"""Give up on a slow upstream: end its connection and answer the client instead.

mitmproxy has no upstream timeout, and an addon cannot act on a flow that waits on its
upstream (no hook is pending: ``flow.kill()`` does nothing then). :func:`give_up` ends the
flow's server connection through the client connection's handler (internal API): a
connection still being opened has its task cancelled, an open one is closed. mitmproxy then
fails the stream as for an upstream that went away (``ResponseProtocolError``), which it
answers with its own 502 page. The patch (``timed_out_answers``) wraps
``HttpStream.handle_protocol_error``: for a flow given up on with an answer, that answer is
sent instead, as one an addon set (the ``response`` hook runs, the client connection stays
usable). Without the patch :func:`give_up` does nothing: the client waits on its upstream as
with stock mitmproxy (the patch's warning at start says so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from chaosproxy.proxy_addons._internals import (
    Patch,
    is_active,
    missing_attributes,
    missing_instance_attributes,
)

logger = logging.getLogger("chaosproxy")

#: flow.metadata key: the answer to send when the upstream connection is given up on
ANSWER_KEY = "chaosproxy_upstream_gave_up"


def check() -> str | None:
    from mitmproxy.proxy import server
    from mitmproxy.proxy.layers import http as layers_http

    return (
        missing_attributes(layers_http, "HttpStream", "ResponseProtocolError")
        or missing_attributes(layers_http.HttpStream, "handle_protocol_error", "send_response")
        or missing_instance_attributes(layers_http.HttpStream, "flow")
        or missing_instance_attributes(server.ConnectionHandler, "transports", "client")
        or missing_instance_attributes(server.ConnectionIO, "handler", "writer")
    )


def applied() -> bool:
    from mitmproxy.proxy.layers import http as layers_http

    return bool(getattr(layers_http.HttpStream.handle_protocol_error, "_chaosproxy", False))


def apply(_: Any = None) -> None:
    from mitmproxy.proxy.layers import http as layers_http

    if applied():
        return
    stream = layers_http.HttpStream
    original = stream.handle_protocol_error
    response_error = layers_http.ResponseProtocolError

    def handle_protocol_error(self: Any, event: Any) -> Iterator[Any]:
        flow: Any = getattr(self, "flow", None)
        answer = flow.metadata.pop(ANSWER_KEY, None) if flow is not None else None
        if answer is not None and isinstance(event, response_error) and flow.response is None:
            flow.response = answer  # as an addon's answer: the response hook, then the client
            return (yield from self.send_response())
        return (yield from original(self, event))

    handle_protocol_error._chaosproxy = True  # type: ignore[attr-defined]
    stream.handle_protocol_error = handle_protocol_error  # type: ignore[method-assign,assignment]


def give_up(handler: Any, flow: Any, answer: Any) -> bool:
    """End ``flow``'s upstream connection; the client gets ``answer`` (an
    ``http.Response``). False when nothing was done: the patch is not active (its check
    failed, so the handler's internals may not be there either; the warning at start said
    so) or the connection is not reachable."""
    if not is_active("timed_out_answers"):
        return False
    try:
        transports = handler.transports
        io = transports.get(flow.server_conn)
        if io is None or getattr(io, "writer", None) is None:
            # still connecting: the flow gets its server_conn once connected, so look for
            # the client connection's one unfinished connect to that address
            address = (flow.request.host, flow.request.port)
            io = next(
                (
                    io
                    for conn, io in list(transports.items())
                    if conn is not handler.client
                    and getattr(io, "writer", None) is None
                    and tuple(conn.address or ()) == address
                ),
                None,
            )
    except AttributeError:
        return False
    if io is None:
        return False
    flow.metadata[ANSWER_KEY] = answer
    writer = getattr(io, "writer", None)
    if writer is not None:
        writer.close()  # its reader sees the end: mitmproxy fails the stream
        return True
    task = getattr(io, "handler", None)
    if task is not None and not task.done():
        task.cancel()  # still connecting
        return True
    flow.metadata.pop(ANSWER_KEY, None)
    return False


PATCH = Patch(
    name="timed_out_answers",
    target="mitmproxy.proxy.layers.http.HttpStream.handle_protocol_error, "
    "ConnectionHandler.transports",
    check=check,
    apply=apply,
    fallback="the upstream timeout (--upstream-timeout) cannot answer 504: a client waits "
    "on a slow upstream until it answers or the client gives up",
)
