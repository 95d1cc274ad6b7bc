"""What the plugin's pytester tests share: a user's project whose conftest serves a JSON
upstream on a free loopback port (``chaos_proxy_upstream``)."""

from __future__ import annotations

import pytest

#: The upstream answers GET and POST with ``{"path": ..., "ok": true}`` (a body is read).
UPSTREAM_CONFTEST = """
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"path": self.path, "ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


@pytest.fixture(scope="session")
def chaos_proxy_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
"""


def new_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """``pytester`` as a project with that conftest and a 60 s timeout per test."""
    pytester.makeconftest(UPSTREAM_CONFTEST)
    pytester.makeini("[pytest]\ntimeout = 60\n")
    return pytester
