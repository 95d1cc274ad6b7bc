"""No garbage left per request: a finished HTTP stream is freed as soon as it is dropped.

mitmproxy's finished HTTP streams hold themselves in reference cycles, so each request's
flow, messages and buffers waited for the garbage collector's full collections: at ~1,000
requests/s, one every few seconds, stalling every request for 30-50 ms. Their cycles are
cut once they are dropped, and reference counting frees them at once. (A closed
connection's own layers still form cycles: a client that opens a connection per request
still leaves those to the collector.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from chaosproxy.proxy_addons._internals import (
    Patch,
    missing_attributes,
    missing_instance_attributes,
)


def check() -> str | None:
    from mitmproxy.proxy.layers import http as layers_http

    problem = missing_attributes(layers_http, "HttpLayer", "HttpStream")
    if problem:
        return problem
    stream = layers_http.HttpStream
    return (
        missing_attributes(stream, "state_done", "state_errored", "handle_event")
        or missing_instance_attributes(stream, "_paused", "client_state", "server_state", "context")
        or missing_instance_attributes(layers_http.HttpLayer, "streams")
    )


def applied() -> bool:
    from mitmproxy.proxy.layers import http as layers_http

    return bool(getattr(layers_http.HttpLayer.__init__, "_chaosproxy", False))


def apply(_: Any = None) -> None:
    """Let a finished HTTP stream be freed as soon as it is dropped (see ``_Streams``)."""
    from mitmproxy.proxy.layers import http as layers_http

    layer = layers_http.HttpLayer
    init = layer.__init__
    if applied():
        return
    stream = layers_http.HttpStream
    _FINISHED.update((stream.state_done, stream.state_errored))
    _FINISHED_TYPE.append(stream)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.streams = _Streams(self.streams)

    __init__._chaosproxy = True  # type: ignore[attr-defined]
    layer.__init__ = __init__  # type: ignore[method-assign]


_FINISHED: set[Any] = set()
_FINISHED_TYPE: list[type] = []


class _Streams(dict[Any, Any]):
    """``HttpLayer.streams``: a stream popped from it has been dropped by its layer.

    A finished ``HttpStream`` holds itself in reference cycles (its state functions are
    its own bound methods; its context lists it among its layers), so it and its flow,
    request, response, headers and buffers (about 20 objects per request) outlive the
    request until the garbage collector's next full collection, which then takes tens of
    milliseconds with every request held up behind it. Once the event that dropped the
    stream is handled, those cycles are cut and reference counting frees it all at once.
    """

    __slots__ = ()

    def pop(self, key: Any, *default: Any) -> Any:
        dropped = dict.pop(self, key, *default)
        if type(dropped) in _FINISHED_TYPE:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return dropped
            loop.call_soon(_loosen, dropped)
        return dropped


def _loosen(stream: Any) -> None:
    """Cut a dropped stream's cycles, unless it could still act (it waits on a command, or
    its states are not the final ones, which silently consume any event)."""
    if stream._paused is not None:
        return
    client, server = stream.client_state, stream.server_state
    if getattr(client, "__func__", None) not in _FINISHED:
        return
    if getattr(server, "__func__", None) not in _FINISHED:
        return
    stream.client_state = stream.server_state = stream.handle_event = _consume
    layers = stream.context.layers
    if layers and layers[-1] is stream:
        layers.pop()


def _consume(event: Any) -> Iterator[Any]:
    """What ``state_done`` and ``state_errored`` do, without holding the stream: any
    event that still reached it is silently consumed."""
    yield from ()


PATCH = Patch(
    name="free_finished_streams",
    target="mitmproxy.proxy.layers.http.HttpLayer.__init__ (its streams dict)",
    check=check,
    apply=apply,
    fallback="finished streams wait for the garbage collector (pauses under load)",
)
