"""Shared helpers for the suite: free ports, waiting on conditions, a local upstream."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest


@functools.cache
def _json_validator(schema_text: str) -> Any:
    import jsonschema

    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_json(instance: Any, schema: dict[str, Any]) -> None:
    """``jsonschema.validate``, checking each schema once: checking it is most of the
    ~0.1 s a call costs. Raises ``jsonschema.ValidationError``."""
    _json_validator(json.dumps(schema, sort_keys=True)).validate(instance)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` (dedented) with ``args`` in a fresh interpreter from the checkout, with
    ``env`` added to the environment; its stdout (the test fails when it exits non-zero)."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def python_json(code: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """As :func:`run_python`: the JSON ``code`` prints last."""
    return json.loads(run_python(code, *args, env=env).strip().splitlines()[-1])


def require_tool(name: str) -> str:
    """The path of a command-line tool; skip without it (fail when CI requires tools)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make sysdeps installs it)"
        if os.environ.get("CHAOSPROXY_REQUIRE_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def body_bytes(n: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (all 256 values occur)."""
    out = bytearray()
    block = seed.to_bytes(8, "big")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            self.send_header(k, v)
        if "Transfer-Encoding" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_one(self) -> None:
        body = self._body()
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        self.server.record(self.command, self.path, dict(self.headers.items()), body)
        if url.path.startswith("/bytes/"):
            n = int(url.path.rsplit("/", 1)[1])
            self._send(200, body_bytes(n, int(query.get("seed", ["0"])[0])))
        elif url.path == "/json":
            doc = {
                "city": "berlin",
                "temp": 21.5,
                "tags": ["a", "b"],
                "wind": {"speed": 3, "dir": "N"},
            }
            self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        elif url.path == "/gzip-json":
            doc = json.dumps({"city": "berlin", "temp": 21.5}).encode()
            self._send(
                200,
                gzip.compress(doc),
                {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        elif url.path == "/br-json":
            import brotli  # mitmproxy depends on it

            doc = json.dumps({"city": "berlin", "temp": 21.5}).encode()
            self._send(
                200,
                brotli.compress(doc),
                {"Content-Type": "application/json", "Content-Encoding": "br"},
            )
        elif url.path.startswith("/chunked/"):
            data = body_bytes(int(url.path.rsplit("/", 1)[1]))
            framed = b"".join(
                b"%x\r\n%s\r\n" % (len(data[i : i + 1000]), data[i : i + 1000])
                for i in range(0, len(data), 1000)
            )
            self._send(200, framed + b"0\r\n\r\n", {"Transfer-Encoding": "chunked"})
        elif url.path == "/empty":
            self._send(200, b"", {"Content-Type": "application/json"})
        elif url.path == "/html":
            self._send(200, b"<html><body>hi</body></html>", {"Content-Type": "text/html"})
        elif url.path.startswith("/status/"):
            self._send(int(url.path.rsplit("/", 1)[1]), b"status\n", {"Content-Type": "text/plain"})
        else:
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_length": len(body),
            }
            self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_one


class UpstreamServer(ThreadingHTTPServer):
    """A local HTTP/1.1 upstream: /echo (what it received, hashed), /bytes/N, /chunked/N
    (the same bytes, chunked), /json, /gzip-json, /br-json, /empty, /html, /status/CODE.
    It records every request it gets."""

    daemon_threads = True
    request_queue_size = 1024  # http.server's default of 5 resets bursts of connections

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()

    def record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.received.append((method, path, headers, body))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


_Server = TypeVar("_Server", bound=socketserver.BaseServer)


@contextlib.contextmanager
def served(server: _Server) -> Iterator[_Server]:
    """Serve ``server`` in a daemon thread while the block runs, then shut it and close."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def running_upstream() -> Iterator[UpstreamServer]:
    with served(UpstreamServer()) as server:
        yield server


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """A WSGI app (e.g. Flask) served on a free loopback port in a thread; yields its URL."""
    from werkzeug.serving import make_server

    with served(make_server("127.0.0.1", 0, app, threaded=True)) as server:
        yield f"http://127.0.0.1:{server.port}"


def curl(url: str, *args: str, timeout: float = 30) -> tuple[int, str, float]:
    """Run curl; return (exit code, HTTP status or '000', total seconds)."""
    import subprocess

    exe = require_tool("curl")
    out = subprocess.run(
        [exe, "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *args, url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    code, _, seconds = out.stdout.strip().partition(" ")
    return out.returncode, code, float(seconds or 0)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made for the test (never committed)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def read_to_end(sock: socket.socket) -> bytes:
    """Everything ``sock`` receives until its peer closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def port_free(port: int) -> bool:
    """Whether a new server can listen on ``port`` (as servers do, with SO_REUSEADDR, so
    connections of an old one still in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


class RedisServer:
    """A ``redis-server`` of our own on a free loopback port, in memory only (no files);
    :meth:`kill` ends it at once (SIGKILL), :meth:`start` starts it again on the same port."""

    def __init__(self) -> None:
        self.binary = require_tool("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        cmd = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, timeout=10, interval=0.02)
        return self

    def answers(self) -> bool:
        """True when it answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def command(self, *words: str) -> bytes:
        """One command's raw answer (RESP), e.g. ``command("FLUSHALL")``."""
        payload = f"*{len(words)}\r\n".encode()
        for word in words:
            data = word.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(payload)
            return sock.recv(65536)


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A fresh redis-server for the test (skipped without one, unless tools are required)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()
