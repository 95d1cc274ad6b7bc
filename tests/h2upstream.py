"""An HTTPS upstream that speaks HTTP/2 and HTTP/1.1, chosen by ALPN in its own order.

Built on the ``h2`` and ``h11`` libraries (mitmproxy and httpx depend on them), so it
needs no system tool. Endpoints: ``/echo`` (what it received: protocol, method, path,
body hash), ``/bytes/N`` (N deterministic bytes) and ``/json``. It records the protocol,
method and path of every request it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11

from tests.support import body_bytes, self_signed


def answer(protocol: str, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body for one request."""
    if path.startswith("/bytes/"):
        data = body_bytes(int(path.rsplit("/", 1)[1]))
        return 200, {"content-type": "application/octet-stream"}, data
    if path == "/json":
        doc = {"city": "berlin", "temp": 21.5, "tags": ["a", "b"]}
        return 200, {"content-type": "application/json"}, json.dumps(doc).encode()
    doc = {
        "protocol": protocol,
        "method": method,
        "path": path,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_length": len(body),
    }
    return 200, {"content-type": "application/json"}, json.dumps(doc).encode()


@dataclass
class H2Upstream:
    """The running server: its URL, the certificate clients trust, what it received."""

    port: int = 0
    cert: Path | None = None
    received: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def record(self, protocol: str, method: str, path: str) -> None:
        self.received.append((protocol, method, path))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        try:
            if alpn == "h2":
                await self._serve_h2(reader, writer)
            else:
                await self._serve_h1(reader, writer)
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    async def _serve_h1(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return
                continue
            if isinstance(event, h11.Request):
                request, body = event, bytearray()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                path = request.target.decode()
                method = request.method.decode()
                self.record("HTTP/1.1", method, path)
                status, headers, out = answer("HTTP/1.1", method, path, bytes(body))
                items = [*headers.items(), ("content-length", str(len(out)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=items)) or b"")
                writer.write(conn.send(h11.Data(data=out)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
                request = None
            elif isinstance(event, h11.ConnectionClosed):
                return

    async def _serve_h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        pending: dict[int, bytes] = {}  # stream -> body bytes not sent yet (flow control)
        writer.write(conn.data_to_send())
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    requests[event.stream_id] = (dict(event.headers), bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    if event.stream_id in requests:
                        requests[event.stream_id][1].extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    headers, body = requests.pop(event.stream_id, ({}, bytearray()))
                    method, path = headers.get(":method", ""), headers.get(":path", "")
                    self.record("HTTP/2", method, path)
                    status, extra, out = answer("HTTP/2", method, path, bytes(body))
                    head = [(":status", str(status)), *extra.items()]
                    head.append(("content-length", str(len(out))))
                    conn.send_headers(event.stream_id, head, end_stream=not out)
                    if out:
                        pending[event.stream_id] = out
                elif isinstance(event, h2.events.StreamReset):
                    requests.pop(event.stream_id, None)
                    pending.pop(event.stream_id, None)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    writer.write(conn.data_to_send())
                    return
            for stream_id in list(pending):
                out = pending[stream_id]
                while out:
                    room = min(
                        conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size
                    )
                    if room <= 0:
                        break
                    conn.send_data(stream_id, out[:room], end_stream=len(out) <= room)
                    out = out[room:]
                if out:
                    pending[stream_id] = out
                else:
                    del pending[stream_id]
            writer.write(conn.data_to_send())
            await writer.drain()


def server_context(cert: Path, key: Path, alpn: Sequence[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(list(alpn))
    return context


@contextlib.contextmanager
def running_h2_upstream(
    directory: Path, alpn: Sequence[str] = ("h2", "http/1.1")
) -> Iterator[H2Upstream]:
    """Serve on a free loopback port in a thread; ``alpn`` in the server's order of
    preference (``("http/1.1",)`` makes an HTTP/1.1-only upstream)."""
    cert, key = self_signed(directory)
    upstream = H2Upstream(cert=cert)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        context = server_context(cert, key, alpn)
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, ssl=context)
        upstream.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield upstream
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(5)
