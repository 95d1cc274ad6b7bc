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


class Reader:
    """Buffered reads of HTTP/1.1 messages from a socket, across keep-alive requests."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def head(self, limit: int = 1 << 20) -> bytes | None:
        """The next message head (without the blank line); None at a clean end of stream."""
        while True:
            at = self.buf.find(b"\r\n\r\n")
            if at >= 0:
                head = bytes(self.buf[:at])
                del self.buf[: at + 4]
                return head
            if len(self.buf) > limit:
                raise ValueError("head too long")
            if not self._fill():
                if self.buf:
                    raise ConnectionError(f"closed inside a head: {bytes(self.buf[:200])!r}")
                return None

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buf)} of {n} bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def line(self) -> bytes:
        while True:
            at = self.buf.find(b"\r\n")
            if at >= 0:
                text = bytes(self.buf[:at])
                del self.buf[: at + 2]
                return text
            if not self._fill():
                raise ConnectionError("closed inside a line")

    def chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.line().split(b";")[0], 16)
            if size == 0:
                while self.line():
                    pass  # trailers
                return bytes(out)
            out += self.exactly(size)
            if self.exactly(2) != b"\r\n":
                raise ValueError("bad chunk framing")

    def to_close(self) -> bytes:
        while self._fill():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data


def parse_head(head: bytes) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """(start line split in three, [(name, value)] exactly as sent)."""
    lines = head.split(b"\r\n")
    start = lines[0].split(b" ", 2)
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields.append((name, value.strip(b" \t")))
    return start, fields


class Blackhole(RawUpstream):
    """An upstream that accepts, reads, and never answers; it closes a connection only
    once its peer has. ``open`` counts the connections the peer still holds."""

    def __init__(self) -> None:
        super().__init__(self._swallow)
        self.open = 0
        self._lock = threading.Lock()

    def _swallow(self, conn: socket.socket) -> None:
        with self._lock:
            self.open += 1
        try:
            while conn.recv(65536):
                pass
        finally:
            with self._lock:
                self.open -= 1
