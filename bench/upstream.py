"""The benchmark's upstream: nginx from Debian when present, else a small fast asyncio server.

Both answer every GET with ``200 ok`` on a keep-alive HTTP/1.1 connection. nginx also
serves a plain reverse-proxy hop (a second port proxying to the first) as the cost
floor of any proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from bench.procs import Proc, start, wait_port

BODY = b"ok\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream origin {{ server 127.0.0.1:{port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{hop_port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class _Answer(asyncio.Protocol):
    """Answers each request head (GET, no body) with RESPONSE; pipelining-safe."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rindex(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * n)


async def serve_python(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answer, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


class Upstream:
    """A running upstream: ``url`` answers 200; ``hop_url`` is nginx proxying to it (or None)."""

    def __init__(self, port: int, hop_port: int, *, nginx: bool = True) -> None:
        self.port, self.hop_port = port, hop_port
        self.kind = "nginx" if nginx and shutil.which("nginx") else "python"
        self.procs: list[Proc] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.hop_url: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Upstream:
        if self.kind == "nginx":
            self._tmp = tempfile.TemporaryDirectory(prefix="chaosproxy-bench-nginx-")
            prefix = Path(self._tmp.name)
            conf = prefix / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(prefix=prefix, port=self.port, hop_port=self.hop_port)
            )
            nginx = shutil.which("nginx") or "nginx"
            self.procs.append(start("nginx", [nginx, "-p", str(prefix), "-c", str(conf)]))
            wait_port(self.hop_port)
            self.hop_url = f"http://127.0.0.1:{self.hop_port}"
        else:
            cmd = [sys.executable, "-m", "bench.upstream", "--port", str(self.port)]
            self.procs.append(start("upstream", cmd))
        wait_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="fast local upstream for the benchmark")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(serve_python(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
