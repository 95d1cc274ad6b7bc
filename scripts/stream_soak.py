#!/usr/bin/env python3
"""Stream soak: long Server-Sent Event streams through chaosproxy, the proxy's RSS sampled.

    python scripts/stream_soak.py --seconds 600     # make soak-stream (SOAK_SECONDS=600)

Starts an upstream (in this process) that sends an endless ``text/event-stream`` (an
event of ``--event-size`` bytes every ``--interval`` seconds, one chunk each), and
``chaosproxy run`` (its own process) with a scenario whose ``stream_stall`` shapes every
stream through the relay and parses every event (its point, ``--stall-after`` events,
is far out: the pause comes once per stream), then holds ``--streams`` clients on raw
sockets reading one stream each for ``--seconds``. Samples the proxy's RSS every
``--sample`` seconds and checks:

- every client received its events whole and in order (``data: <n>`` counting up);
- the RSS after ``--warmup`` grows by less than ``--rss-slack`` MB until the end: the
  proxy does not buffer the stream.

Prints the figures (and writes them as JSON with ``--json PATH``); exit 0 when both hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from soak import free_port, rss_kb  # this folder's: the soak's helpers

SCENARIO = """\
name: stream-soak
rules:
  - name: shaped
    fault: {{type: stream_stall, events: {after}, pause: 50ms}}
"""


class EndlessEvents(BaseHTTPRequestHandler):
    """``GET /events``: an endless SSE stream, one event per chunk."""

    protocol_version = "HTTP/1.1"
    interval = 0.01
    event_size = 200

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pad = b"x" * max(0, self.event_size - 30)
        n = 0
        try:
            while True:
                event = b"id: %d\ndata: %d %s\n\n" % (n, n, pad)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                n += 1
                time.sleep(self.interval)
        except OSError:
            return  # the proxy closed the stream (the client left)


class Reader(threading.Thread):
    """One client: reads one stream on a raw socket, checks its events come whole and in
    order."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.bytes = 0
        self.events = 0
        self.problem: str | None = None

    def run(self) -> None:
        try:
            self._read()
        except Exception as exc:  # noqa: BLE001 - any failure is this client's problem
            self.problem = f"{type(exc).__name__}: {exc} after {self.events} events"

    def _read(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            framed = b""  # as received: chunked
            body = b""  # the body so far, its chunk framing undone, not yet parsed
            head = False
            while not self.stop.is_set():
                data = s.recv(65536)
                if not data:
                    self.problem = f"the stream ended after {self.events} events"
                    return
                self.bytes += len(data)
                framed += data
                if not head:
                    if b"\r\n\r\n" not in framed:
                        continue
                    framed, head = framed.split(b"\r\n\r\n", 1)[1], True
                framed, chunks = _dechunk(framed)
                body = self._events(body + chunks)

    def _events(self, body: bytes) -> bytes:
        """Check each whole event's number (chunks need not hold whole events); keep the
        rest."""
        *events, rest = body.split(b"\n\n")
        for event in events:
            number = int(event.split(b"data: ", 1)[1].split(b" ", 1)[0])
            if number != self.events and self.problem is None:
                self.problem = f"event {number} came when {self.events} was due"
            self.events += 1
        return rest


def _dechunk(framed: bytes) -> tuple[bytes, bytes]:
    """The whole chunks at the start of ``framed``, unframed; and what is left."""
    out = bytearray()
    while b"\r\n" in framed:
        size_line, rest = framed.split(b"\r\n", 1)
        size = int(size_line, 16)
        if len(rest) < size + 2:
            break
        out += rest[:size]
        framed = rest[size + 2 :]
    return framed, bytes(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--streams", type=int, default=4, help="clients, one stream each (4)")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between events")
    parser.add_argument("--event-size", type=int, default=1000, help="bytes per event (1000)")
    parser.add_argument("--stall-after", type=int, default=1000, help="events before the pause")
    parser.add_argument("--sample", type=float, default=1.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, help="seconds before the RSS baseline")
    parser.add_argument("--rss-slack", type=float, default=10.0, help="MB of growth allowed")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.seconds * 0.2)
    exe = shutil.which("chaosproxy", path=str(Path(sys.executable).parent)) or shutil.which(
        "chaosproxy"
    )
    if exe is None:
        raise SystemExit("stream soak: chaosproxy is not installed")

    EndlessEvents.interval, EndlessEvents.event_size = args.interval, args.event_size
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), EndlessEvents)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="chaosproxy-stream-soak-"))
    scenario = work / "stream-soak.yaml"
    scenario.write_text(SCENARIO.format(after=args.stall_after))
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [exe, "run", "--upstream", f"http://127.0.0.1:{upstream.server_address[1]}",
         "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
         "--scenario", str(scenario)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stdout or []), daemon=True).start()
    stop = threading.Event()
    readers: list[Reader] = []
    samples: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("stream soak: the proxy did not start:\n" + "".join(log))
            try:
                if requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        rate = args.event_size / args.interval * args.streams
        print(
            f"stream soak: {args.seconds:g}s, {args.streams} streams of {args.event_size}-byte "
            f"events every {args.interval * 1000:g} ms (~{rate / 1e6:.2f} MB/s in all); "
            f"proxy pid {proc.pid}"
        )
        readers = [Reader(port, stop) for _ in range(args.streams)]
        for reader in readers:
            reader.start()
        started = time.monotonic()
        last_print = started
        while (now := time.monotonic()) - started < args.seconds:
            samples.append((now - started, rss_kb(proc.pid)))
            if now - last_print >= 60:
                last_print = now
                streamed = sum(r.bytes for r in readers)
                print(
                    f"  {now - started:5.0f}s  RSS {samples[-1][1] / 1024:.1f} MB  "
                    f"{streamed / 1e6:.0f} MB streamed"
                )
            time.sleep(args.sample)
        samples.append((time.monotonic() - started, rss_kb(proc.pid)))
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        upstream.shutdown()

    after = [kb for t, kb in samples if t >= warmup] or [samples[-1][1]]
    baseline, peak, end = after[0], max(after), samples[-1][1]
    growth_mb = (max(peak, end) - baseline) / 1024
    figures = {
        "seconds": args.seconds,
        "streams": args.streams,
        "bytes": sum(r.bytes for r in readers),
        "events": sum(r.events for r in readers),
        "rss_start_mb": round(samples[0][1] / 1024, 1),
        "rss_baseline_mb": round(baseline / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
        "rss_end_mb": round(end / 1024, 1),
        "rss_growth_mb": round(growth_mb, 1),
        "rss_samples": [[round(t, 1), kb] for t, kb in samples],
        "problems": [r.problem for r in readers if r.problem],
    }
    if growth_mb >= args.rss_slack:
        figures["problems"].append(
            f"RSS grew {growth_mb:.1f} MB after warm-up (allowed {args.rss_slack:g})"
        )
    print(
        f"streamed {figures['bytes'] / 1e6:.1f} MB, {figures['events']} events; RSS "
        f"{figures['rss_start_mb']} MB at start, {figures['rss_baseline_mb']} after "
        f"{warmup:g}s, peak {figures['rss_peak_mb']}, end {figures['rss_end_mb']} "
        f"(growth {figures['rss_growth_mb']} MB)"
    )
    for problem in figures["problems"]:
        print(f"PROBLEM: {problem}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
