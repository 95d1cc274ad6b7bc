"""Which bodies stream through the proxy, and HTTP/2 bodies framed for an HTTP/1 upstream."""

from __future__ import annotations

from mitmproxy import http

#: Bodies from this size (or of unknown length) stream through instead of being held whole
#: in memory, whenever no fault needs them.
STREAM_FROM = 64 * 1024


def is_large(message: http.Message, request: bool) -> bool:
    """A body of at least STREAM_FROM bytes, or of unknown length (chunked, read to close).

    An HTTP/1 request without Content-Length or Transfer-Encoding has no body at all; an
    HTTP/2 one without Content-Length is read whole (see :func:`frame_h2_body`).
    """
    length = message.headers.get("content-length")
    if length is not None:
        return not length.isdigit() or int(length) >= STREAM_FROM
    if "transfer-encoding" in message.headers:
        return True
    return not request


def frame_h2_body(request: http.Request) -> None:
    """Give an HTTP/2 request body a Content-Length when the client sent none.

    HTTP/2 frames bodies itself; mitmproxy forwards such a request to an HTTP/1.1 upstream
    with neither Content-Length nor Transfer-Encoding, and the upstream reads no body.
    """
    if (
        request.http_version.startswith(("HTTP/2", "HTTP/3"))
        and request.raw_content
        and "content-length" not in request.headers
    ):
        request.headers["content-length"] = str(len(request.raw_content))
