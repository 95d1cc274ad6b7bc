"""Upstream connections opened while a delayed request waits
(proxy_addons/_internals/warmup.py): on the wire through ``chaosproxy run``, and the
bookkeeping on its own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosproxy.proxy_addons._internals import warmup
from tests.support import free_port, read_to_end, self_signed, wait_until

EXE = str(Path(sys.executable).with_name("chaosproxy"))

SCENARIO = """
name: warm
rules:
  - {name: slow, match: {path: /slow}, fault: {type: latency, delay: 400ms}}
"""


class Upstream:
    """A raw HTTP/1.1 upstream that notes when each connection opened, when each request
    on it came in, and when the proxy closed it."""

    def __init__(self, close_first: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self.close_first = close_first  # hang up on the first connection at once
        self.tls = tls  # TLS after the TCP accept (so "opened" is the accept, not the handshake)
        self.connections: list[dict[str, Any]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn: dict[str, Any] = {"opened": time.monotonic(), "requests": [], "closed": None}
        self.connections.append(conn)
        if self.close_first and len(self.connections) == 1:
            writer.close()
            return
        try:
            if self.tls is not None:
                await writer.start_tls(self.tls)
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                conn["requests"].append((time.monotonic(), head.split(b" ")[1].decode()))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            conn["closed"] = time.monotonic()
        finally:
            writer.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def raw_upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.stop()


class Proxy:
    """``chaosproxy run`` in front of ``upstream_port``; its output lines, as they come."""

    def __init__(
        self,
        upstream_port: int,
        scenario: Path,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [EXE, "run", "--upstream", f"{scheme}://127.0.0.1:{upstream_port}"]
            + ["--listen", f"127.0.0.1:{self.port}", "--scenario", str(scenario)]
            + ["--admin", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(self.proc.stdout or ()), daemon=True
        )
        self._reader.start()
        wait_until(lambda: self._listening() or self.proc.poll() is not None, timeout=20)
        assert self.proc.poll() is None, self.stop()

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return "".join(self.lines)


def ask(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while not data.endswith(b"\r\n\r\nok"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "warm.yaml"
    path.write_text(SCENARIO)
    return path


def _lead(conn: dict[str, Any]) -> float:
    """How long the upstream connection was open before its first request came."""
    return float(conn["requests"][0][0] - conn["opened"])


def test_a_delayed_request_finds_its_upstream_connection_open(
    raw_upstream: Upstream, scenario: Path
) -> None:
    proxy = Proxy(raw_upstream.port, scenario)
    try:
        with proxy.connect() as sock:
            started = time.monotonic()
            assert ask(sock, "/slow").startswith(b"HTTP/1.1 200")
            assert time.monotonic() - started >= 0.4  # the whole delay, still
            assert ask(sock, "/slow").startswith(b"HTTP/1.1 200")  # its connection again
        with proxy.connect() as sock:
            assert ask(sock, "/fast").startswith(b"HTTP/1.1 200")  # no delay: none early
    finally:
        proxy.stop()
    first, second = raw_upstream.connections
    assert [p for _, p in first["requests"]] == ["/slow", "/slow"]
    # opened during the last LEAD (50 ms) of the 400 ms wait, not after it
    assert 0.025 < _lead(first) < 0.3, _lead(first)
    assert [p for _, p in second["requests"]] == ["/fast"] and _lead(second) < 0.01


def test_an_https_upstream_gets_its_tls_handshake_on_the_early_connection(
    scenario: Path, tmp_path: Path
) -> None:
    """mitmproxy does the TLS handshake itself, on the TCP connection opened during the
    wait: the request still waits its whole delay and arrives over TLS."""
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    up = Upstream(tls=tls)
    proxy = Proxy(up.port, scenario, scheme="https", args=("--insecure",))
    try:
        with proxy.connect() as sock:
            started = time.monotonic()
            assert ask(sock, "/slow").startswith(b"HTTP/1.1 200")
            assert time.monotonic() - started >= 0.4
    finally:
        proxy.stop()
        up.stop()
    (conn,) = up.connections
    assert [p for _, p in conn["requests"]] == ["/slow"]
    assert 0.025 < _lead(conn) < 0.3, _lead(conn)


def test_without_the_lean_start_the_connection_opens_after_the_delay(
    raw_upstream: Upstream, scenario: Path
) -> None:
    """The control for the test above: what mitmproxy alone does."""
    proxy = Proxy(raw_upstream.port, scenario, {"CHAOSPROXY_NO_LEAN": "1"})
    try:
        with proxy.connect() as sock:
            assert ask(sock, "/slow").startswith(b"HTTP/1.1 200")
    finally:
        proxy.stop()
    (conn,) = raw_upstream.connections
    assert _lead(conn) < 0.01


def test_a_client_that_leaves_during_the_delay_gets_no_upstream_connection(
    raw_upstream: Upstream, scenario: Path
) -> None:
    proxy = Proxy(raw_upstream.port, scenario)
    try:
        with proxy.connect() as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            sent = time.monotonic()
            wait_until(lambda: proxy.logged("injected slow"), timeout=5)
            # gone for good, before its connection would open (a reset: after a mere FIN,
            # HTTP/1 still awaits the answer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # past the moment its delay would have ended: what matters is what did not happen
        time.sleep(max(0.0, sent + 0.6 - time.monotonic()))
        with proxy.connect() as sock:
            assert ask(sock, "/fast").startswith(b"HTTP/1.1 200")
    finally:
        proxy.stop()
    assert [[p for _, p in c["requests"]] for c in raw_upstream.connections] == [["/fast"]]


def test_an_early_connection_the_upstream_hung_up_on_is_not_used(scenario: Path) -> None:
    upstream = Upstream(close_first=True)
    proxy = Proxy(upstream.port, scenario)
    try:
        with proxy.connect() as sock:
            assert ask(sock, "/slow").startswith(b"HTTP/1.1 200")
    finally:
        proxy.stop()
        upstream.stop()
    early, fresh = upstream.connections
    assert early["requests"] == [] and [p for _, p in fresh["requests"]] == ["/slow"]


def test_an_upstream_that_is_down_still_gets_mitmproxys_own_answer(scenario: Path) -> None:
    proxy = Proxy(free_port(), scenario)
    try:
        with proxy.connect() as sock:
            started = time.monotonic()
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = read_to_end(sock)
            took = time.monotonic() - started
    finally:
        log = proxy.stop()
    assert data.startswith(b"HTTP/1.1 502"), data[:200]
    assert took >= 0.4  # after the delay, as without the early connection
    assert "Traceback" not in log


# ------------------------------------------------------------------ the bookkeeping alone


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare() acts as in a lean process, without patching this test process's
    mitmproxy; KEEP is short so that expiry is seen quickly."""
    monkeypatch.setattr(warmup, "_installed", [True])
    monkeypatch.setattr(warmup, "_early", {})
    monkeypatch.setattr(warmup, "_upstreams", {})
    monkeypatch.setattr(warmup, "KEEP", 0.2)


async def _server() -> tuple[asyncio.Server, list[Any], int]:
    """A server that keeps what it accepted: (reader, writer) pairs."""
    accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append((reader, writer))

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    return server, accepted, port


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


@pytest.mark.usefixtures("installed")
def test_early_connections_are_taken_once_expire_and_are_discarded() -> None:
    async def main() -> None:
        server, accepted, port = await _server()
        address = ("127.0.0.1", port)
        warmup.prepare("c1", address, time.time() + 0.06)  # opens at once: less than LEAD+
        warmup.prepare("c1", address, time.time() + 0.06)  # one per client and address
        await _until(lambda: len(accepted) == 1)
        early = warmup._early["c1"].pop(address)
        streams = await early.take()
        assert streams is not None
        assert await early.take() is None  # handed over once
        streams[1].close()

        warmup._upstreams["c2"] = 1  # a client with an upstream connection: nothing early
        warmup.prepare("c2", address, time.time() + 0.06)
        assert "c2" not in warmup._early

        warmup.prepare("c3", address, time.time() + 0.01)  # never asked for: expires
        await _until(lambda: len(accepted) == 2)
        await _until(lambda: "c3" not in warmup._early, timeout=2)
        await _until(accepted[1][0].at_eof)  # closed by the proxy side

        warmup.prepare("c6", address, time.time() + 0.06)  # a second, later wait of
        warmup.prepare("c6", address, time.time() + 5)  # the same request: opens later
        await asyncio.sleep(0.2)
        assert len(accepted) == 2
        warmup.discard("c6")

        warmup.prepare("c4", address, time.time() + 5)  # not opened yet when it leaves
        warmup.discard("c4")
        assert "c4" not in warmup._early

        warmup.prepare(
            "c5", address, time.time() + warmup.LEAD / 2
        )  # opened, then its client leaves
        await _until(lambda: len(accepted) == 3)
        warmup.discard("c5")
        assert "c5" not in warmup._early
        await _until(accepted[2][0].at_eof)
        assert len(accepted) == 3  # c4's was never opened

        for _, writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()  # Python 3.12 waits for the accepted connections

    asyncio.run(main())


@pytest.mark.usefixtures("installed")
def test_an_early_connection_the_upstream_closed_is_not_handed_over() -> None:
    async def main() -> None:
        server, accepted, port = await _server()
        address = ("127.0.0.1", port)
        warmup.prepare("c", address, time.time() + 0.01)
        await _until(lambda: accepted)
        accepted[0][1].close()  # the upstream hangs up while the request waits
        early = warmup._early["c"].pop(address)
        assert early.task is not None
        reader, _ = await early.task
        await _until(reader.at_eof)
        assert await early.take() is None
        for _, writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()  # Python 3.12 waits for the accepted connections

    asyncio.run(main())


def test_nothing_is_opened_early_where_the_handover_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(warmup, "_installed", [])
    monkeypatch.setattr(warmup, "_early", {})
    warmup.prepare("c", ("127.0.0.1", 9), time.time() + 1)
    assert warmup._early == {}
