"""The chunk framing ``stream_cut mode: truncated`` takes over (a reliance, not a patch).

mitmproxy gives addons no way to send a chunk that is announced but never finished. Its
HTTP/1.1 server side (``Http1Server.send``) keeps the answer its ``ResponseHeaders`` event
carries (the flow's own ``flow.response``) and, for each piece of body it writes, frames
it as a chunk only if that answer's ``Transfer-Encoding`` says ``chunked`` *at that
moment*. :class:`~chaosproxy.proxy_addons.streamend.ClientEnd` relies on exactly that: once
the head has gone it takes the header off the flow's answer, frames the chunks itself
(announcing the last one whole and sending half of it), and puts the header back.

Nothing is replaced here: :data:`PATCH` declares the reliance, so its shape is checked
where every patch's is, it is listed by ``chaosproxy run -v`` and ``GET /healthz``, and
when the shape is not there (one warning) :func:`usable` is False and ``truncated``
degrades to ``reset`` (``streamend.py``): a broken stream still, never a stream framed
twice or a silently clean end.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from chaosproxy.proxy_addons._internals import Patch, is_active, missing_attributes

NAME = "truncated_chunks"

#: ``self.response = [response =] event.response``: the layer keeps the event's answer
_KEEPS_THE_ANSWER = re.compile(r"self\.response\s*=\s*(?:response\s*=\s*)?event\.response\b")
#: the framing decision, read from that answer's headers
_READS_THE_HEADER = 'self.response.headers.get("transfer-encoding"'
#: the HTTP stream hands the layer the flow's own answer, not a copy
_SENDS_THE_FLOWS_ANSWER = re.compile(r"ResponseHeaders\(\s*self\.stream_id,\s*self\.flow\.response")


def _branch(source: str, event: str) -> str:
    """The part of ``source`` handling ``isinstance(event, <event>)``, up to the next one."""
    start = source.find(f"isinstance(event, {event})")
    if start < 0:
        return ""
    end = source.find("elif isinstance(event,", start + 1)
    return source[start : end if end > 0 else len(source)]


def check() -> str | None:
    from mitmproxy.proxy.layers import http as layers_http
    from mitmproxy.proxy.layers.http import _http1

    missing = missing_attributes(_http1, "Http1Server") or missing_attributes(
        layers_http, "HttpStream"
    )
    if missing:
        return missing
    send = inspect.getsource(_http1.Http1Server.send)
    if not _KEEPS_THE_ANSWER.search(_branch(send, "ResponseHeaders")):
        return "Http1Server.send does not keep the ResponseHeaders event's answer"
    if _READS_THE_HEADER not in _branch(send, "ResponseData"):
        return "Http1Server.send does not frame each piece by the answer's Transfer-Encoding"
    if not _SENDS_THE_FLOWS_ANSWER.search(inspect.getsource(layers_http.HttpStream)):
        return "HttpStream does not hand the flow's own answer to the HTTP/1 layer"
    return None


def _apply(_: Any) -> None:
    """Nothing to change: the check is the point (see the module's docstring)."""


def usable() -> bool:
    """True when ``truncated`` may take the chunk framing over (the shape was there)."""
    return is_active(NAME)


PATCH = Patch(
    name=NAME,
    target="mitmproxy.proxy.layers.http._http1.Http1Server.send (frames each piece of the "
    "flow's answer by its Transfer-Encoding, read per piece)",
    check=check,
    apply=_apply,
    fallback="stream_cut/stream_stall mode truncated ends the stream with a TCP reset instead",
)
