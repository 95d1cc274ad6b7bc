"""A tiny upstream that streams slowly: Server-Sent Events and NDJSON, one chunk per event.

``GET /sse?events=N&interval=S&eol=lf|crlf|cr&comments=1&length=1``: ``text/event-stream``
with N events (``event: token`` + ``data: {"i": i}``), each written as its own chunk
``interval`` seconds apart, lines ended with ``eol``; ``comments=1`` puts a comment block
before each event; ``length=1`` sends the body with a Content-Length instead of chunked.
``GET /ndjson?chunks=N&interval=S``: ``application/x-ndjson``, one line per chunk.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support import self_signed, served

EOLS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def sse_event(i: int, eol: bytes = b"\n") -> bytes:
    return b"event: token" + eol + b'data: {"i": %d}' % i + eol + eol


def sse_pieces(events: int, eol: bytes = b"\n", comments: bool = False) -> list[bytes]:
    """The body, one piece per event (a comment block first in each, with ``comments``)."""
    comment = b": keep-alive" + eol + eol if comments else b""
    return [comment + sse_event(i, eol) for i in range(events)]


def ndjson_pieces(chunks: int) -> list[bytes]:
    return [b'{"line": %d}\n' % i for i in range(chunks)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        interval = float(query.get("interval", "0.02"))
        if url.path == "/sse":
            eol = EOLS[query.get("eol", "lf")]
            pieces = sse_pieces(int(query.get("events", "5")), eol, query.get("comments") == "1")
            content_type = "text/event-stream"
        elif url.path == "/ndjson":
            pieces = ndjson_pieces(int(query.get("chunks", "5")))
            content_type = "application/x-ndjson"
        else:
            self.send_error(404)
            return
        self.server.requests.append({k.lower(): v for k, v in self.headers.items()})  # type: ignore[attr-defined]
        chunked = query.get("length") != "1"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(sum(map(len, pieces))))
        self.end_headers()
        try:
            for piece in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                self.wfile.flush()
                time.sleep(interval)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError:
            pass  # the proxy went away (a cut): nothing more to send


class SSEUpstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls_dir: Path | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, str]] = []
        self.scheme = "http"
        if tls_dir is not None:  # HTTPS with a self-signed certificate for 127.0.0.1
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed(tls_dir))
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"


@contextmanager
def sse_upstream(tls_dir: Path | None = None) -> Iterator[SSEUpstream]:
    """The upstream on a free loopback port (HTTPS when given a directory for its cert)."""
    with served(SSEUpstream(tls_dir)) as server:
        yield server
