"""A recording upstream for the transparency suite.

Every request is kept exactly as it arrived (request line, header names with their case,
repeats and order, a hash of the body), keyed by its ``X-T-Id`` header; the answer is
what the request's ``X-T-*`` headers ask for: status, size, framing, extra headers, and a
body drawn from a seed, so the client can check it without the upstream telling it.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import ssl
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from tests.reliability.rawwire import Reader, parse_head

NO_BODY_STATUS = {204, 304}


def payload(seed: int, size: int) -> bytes:
    """The deterministic body for (seed, size), on both sides of the proxy."""
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Received:
    """One request as the upstream got it."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body_sha256: str
    body_length: int
    answer_headers: tuple[tuple[str, str], ...]

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


class Mirror:
    """A threaded HTTP/1.1 upstream on 127.0.0.1, plain or TLS (``tls=(cert, key)``)."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port: int = self.sock.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)
            self.context.set_alpn_protocols(["http/1.1"])
        self.received: dict[str, Received] = {}
        self.errors: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.sock.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                conn.settimeout(30)
                conn = self.context.wrap_socket(conn, server_side=True)
            conn.settimeout(60)
            reader = Reader(conn)
            while self._one(conn, reader):
                pass
        except (OSError, ssl.SSLError):
            pass  # the proxy closed its side
        except Exception as exc:  # reported by the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def _one(self, conn: socket.socket, reader: Reader) -> bool:
        head = reader.head()
        if head is None:
            return False
        start, fields = parse_head(head)
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)
        lower = {k.lower(): v for k, v in headers}
        if "chunked" in lower.get("transfer-encoding", "").lower():
            body = reader.chunked()
        else:
            body = reader.exactly(int(lower.get("content-length", "0")))
        method = start[0].decode("latin-1")
        status = int(lower.get("x-t-status", "200"))
        size = int(lower.get("x-t-size", "0"))
        seed = int(lower.get("x-t-seed", "0"))
        extra = [(str(k), str(v)) for k, v in json.loads(lower.get("x-t-headers", "[]"))]
        record = Received(
            method=method,
            target=start[1].decode("latin-1"),
            version=start[2].decode("latin-1"),
            headers=headers,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_length=len(body),
            answer_headers=tuple(extra),
        )
        with self._lock:
            self.received[lower.get("x-t-id", f"anonymous-{len(self.received)}")] = record
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Whatever"
        out = bytearray(f"HTTP/1.1 {status} {reason}\r\n".encode())
        for k, v in extra:
            out += f"{k}: {v}\r\n".encode("latin-1")
        data = b"" if status in NO_BODY_STATUS else payload(seed, size)
        chunked = lower.get("x-t-chunked") == "1" and status not in NO_BODY_STATUS
        if chunked:
            out += b"Transfer-Encoding: chunked\r\n"
        elif status not in NO_BODY_STATUS:
            out += b"Content-Length: %d\r\n" % len(data)
        close = lower.get("connection", "").lower() == "close"
        if close:
            out += b"Connection: close\r\n"
        out += b"\r\n"
        conn.sendall(bytes(out))
        if method != "HEAD" and data:
            if chunked:
                rng = random.Random(seed ^ 0x5EED)
                at = 0
                while at < len(data):
                    n = rng.randint(1, 65536)
                    piece = data[at : at + n]
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    at += n
            else:
                conn.sendall(data)
        if chunked and method != "HEAD":
            conn.sendall(b"0\r\n\r\n")
        return not close
