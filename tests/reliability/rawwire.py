"""Raw-socket peers for the reliability suite: an upstream whose every byte the test
controls, and a client that reads exactly what the proxy sends."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

Handler = Callable[[socket.socket], None]


class RawUpstream:
    """A TCP server on 127.0.0.1 that hands each connection to ``handler`` on a thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.handler(conn)
            except OSError:
                pass  # the proxy went away: that is what some tests do
            except BaseException as exc:  # surfaced by the test through .errors
                self.errors.append(exc)

    def __enter__(self) -> RawUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.sock.close()


def read_head(conn: socket.socket, limit: int = 1 << 20) -> tuple[bytes, bytes]:
    """Read up to the blank line; returns (head, bytes already read after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the end of the head: {data[:200]!r}")
        data += chunk
        if len(data) > limit:
            raise ValueError("head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode("latin-1")
    return None


def read_exactly(conn: socket.socket, n: int, already: bytes = b"") -> bytes:
    data = bytearray(already)
    while len(data) < n:
        chunk = conn.recv(min(1 << 20, n - len(data)))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_chunked(conn: socket.socket, already: bytes = b"") -> bytes:
    """Decode a chunked body from ``conn`` (``already``: bytes read past the head)."""
    buf = bytearray(already)
    out = bytearray()

    def line() -> bytes:
        while b"\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunked body")
            buf.extend(chunk)
        at = buf.index(b"\r\n")
        text = bytes(buf[:at])
        del buf[: at + 2]
        return text

    while True:
        size = int(line().split(b";")[0], 16)
        if size == 0:
            while line():
                pass  # trailers
            return bytes(out)
        while len(buf) < size + 2:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunk")
            buf.extend(chunk)
        out += buf[:size]
        del buf[: size + 2]


@contextlib.contextmanager
def connect(port: int, timeout: float = 20.0) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()
