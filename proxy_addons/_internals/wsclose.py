"""Close a WebSocket with a close code of the proxy's choosing (``ws_close``).

mitmproxy gives addons no way to close a WebSocket: ``flow.kill()`` does nothing to an
upgraded flow, and ``inject.websocket`` sends only text and binary messages. Its
``WebsocketLayer`` relays each side through a wsproto connection (``client_ws``,
``server_ws``) and, when one side's wsproto yields a ``CloseConnection``, records the code
and reason in ``flow.websocket``, sends that close frame to both sides, closes both
connections and runs the ``websocket_end`` hook.

The patch (``websocket_close``) wraps ``WebsocketLayer.__init__`` to remember each layer by
its flow's id (weakly). :func:`close` puts a ``CloseConnection`` first in the pending events
of the server side's wsproto connection and injects an empty message from the server: the
layer, handling that injection, meets the close first and acts as if the server had closed
(the caller drops the empty message in its hook). Pending events are read only when the
layer next asks wsproto for events, hence the injection even from a message hook. Without
the patch :func:`close` returns False: the socket stays open and the caller warns.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from chaosproxy.proxy_addons._internals import (
    Patch,
    is_active,
    missing_attributes,
    missing_instance_attributes,
)

logger = logging.getLogger("chaosproxy")

#: flow id -> its WebsocketLayer, while the layer lives
_layers: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def check() -> str | None:
    import wsproto
    from mitmproxy.proxy.layers import websocket

    probe = websocket.WebsocketConnection(wsproto.ConnectionType.SERVER, conn=None)  # type: ignore[arg-type]
    return (
        missing_attributes(websocket, "WebsocketLayer", "WebSocketMessageInjected")
        or missing_instance_attributes(websocket.WebsocketLayer, "flow", "client_ws", "server_ws")
        or missing_attributes(wsproto.events, "CloseConnection")
        or missing_attributes(probe, "_events", "state")
    )


def _apply(_: Any) -> None:
    from mitmproxy.proxy.layers import websocket

    layer_class = websocket.WebsocketLayer
    if getattr(layer_class.__init__, "_chaosproxy", False):
        return
    original = layer_class.__init__

    def __init__(self: Any, context: Any, flow: Any) -> None:
        original(self, context, flow)
        _layers[flow.id] = self

    __init__._chaosproxy = True  # type: ignore[attr-defined]
    layer_class.__init__ = __init__  # type: ignore[method-assign]


def close(flow: Any, code: int, reason: str, proxyserver: Any) -> bool:
    """Close ``flow``'s WebSocket with ``code`` and ``reason``, as if the server had sent that
    close frame, and inject an empty message from the server through ``proxyserver``
    (mitmproxy's addon) to make the layer act on it at once (drop that message in the
    ``websocket_message`` hook). False when the layer is unknown (the patch is off, the
    socket is over) or the server side is closing already."""
    if not is_active("websocket_close") or proxyserver is None:
        return False
    layer = _layers.get(flow.id)
    ws = getattr(layer, "server_ws", None)
    if ws is None:
        return False
    import wsproto
    import wsproto.events
    from mitmproxy import websocket
    from mitmproxy.proxy.layers.websocket import WebSocketMessageInjected
    from wsproto.frame_protocol import Opcode

    if ws.state is not wsproto.ConnectionState.OPEN:
        return False
    ws._events.append(wsproto.events.CloseConnection(code=code, reason=reason))
    message = websocket.WebSocketMessage(Opcode.BINARY, False, b"", injected=True)
    try:
        proxyserver.inject_event(WebSocketMessageInjected(flow, message))
    except ValueError:  # the client connection is gone already
        ws._events.pop()
        return False
    return True


PATCH = Patch(
    name="websocket_close",
    target="mitmproxy.proxy.layers.websocket.WebsocketLayer (__init__, client_ws/server_ws)",
    check=check,
    apply=_apply,
    fallback="ws_close cannot close a WebSocket: it stays open (one warning per rule)",
)
