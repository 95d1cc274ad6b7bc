"""Load generation: ``wrk`` when it is installed, else a bundled asyncio generator.

Both keep connections alive and report requests/s, latency percentiles and every
answer that was not a 2xx (or a socket error): a fast run of errors is not a fast proxy.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Result:
    """One load run."""

    tool: str
    connections: int
    requests: int
    seconds: float
    errors: int
    """Non-2xx answers plus socket errors (connect, read, write, timeout)."""
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1)}


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


# --------------------------------------------------------------------------- wrk

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str, connections: int) -> Result:
    """Read wrk's --latency report."""
    pct = {
        m.group(1): _ms(m.group(2))
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.MULTILINE)
    }
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not m or "50" not in pct:
        raise ValueError(f"unexpected wrk output:\n{output}")
    requests = int(m.group(1))
    seconds = _ms(m.group(2) + m.group(3)) / 1000
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return Result("wrk", connections, requests, seconds, errors, pct["50"], pct["90"], pct["99"])


def run_wrk(url: str, connections: int, duration: float) -> Result:
    threads = 1 if connections < 4 else 2
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return parse_wrk(out.stdout, connections)


# --------------------------------------------------------------------------- asyncio


async def _one_connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    budget: list[int],
    latencies: list[float],
    errors: list[int],
) -> None:
    reader = writer = None
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head[9:12])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value)
                elif lname == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - t0) * 1000)
            if not 200 <= status < 300:
                errors[0] += 1
            if close:
                writer.close()
                writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            errors[0] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def run_asyncio_async(
    url: str, connections: int, duration: float | None = None, count: int | None = None
) -> Result:
    """``connections`` keep-alive clients for ``duration`` seconds or ``count`` requests."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: bench\r\n\r\n".encode()
    latencies: list[float] = []
    errors = [0]
    budget = [count if count is not None else 1 << 62]
    t0 = time.monotonic()
    deadline = t0 + (duration if duration is not None else 3600.0)
    await asyncio.gather(
        *(
            _one_connection(host, port, request, deadline, budget, latencies, errors)
            for _ in range(connections)
        )
    )
    seconds = time.monotonic() - t0
    latencies.sort()
    return Result(
        "asyncio",
        connections,
        len(latencies),
        seconds,
        errors[0],
        percentile(latencies, 50),
        percentile(latencies, 90),
        percentile(latencies, 99),
    )


def run_asyncio(
    url: str, connections: int, duration: float | None = None, count: int | None = None
) -> Result:
    return asyncio.run(run_asyncio_async(url, connections, duration, count))


def run(url: str, connections: int, duration: float, *, use_wrk: bool) -> Result:
    """Load ``url`` for ``duration`` seconds with wrk (when asked and present) or asyncio."""
    if use_wrk:
        return run_wrk(url, connections, duration)
    return run_asyncio(url, connections, duration)


async def hold_connections(url: str, n: int) -> tuple[list[asyncio.StreamWriter], int]:
    """Open ``n`` connections that each send one request to ``url`` (which the proxy holds).

    Returns the writers (close them to let go) and how many could connect.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        writer.write(request)
        await writer.drain()
        writers.append(writer)

    for start in range(0, n, 100):  # in batches, not to overrun the accept queue
        await asyncio.gather(*(one() for _ in range(min(100, n - start))))
    return writers, len(writers)
