#!/usr/bin/env python3
"""Soak test: chaosproxy under moderate load with a mixed scenario, for a bounded time.

    python scripts/soak.py --seconds 600        # make soak (SOAK_SECONDS=600 by default)

Starts a local upstream (in this process) and ``chaosproxy run`` (its own process, so its
memory and log are its own), drives ``--workers`` clients at about ``--rate`` requests per
second in all -- a ``--churn`` share of them on a fresh connection each, uploads small and
>= 64 KB (streamed by the proxy) with content-length and chunked framing, and a
``--leavers`` share of raw-socket clients that send a head and part of a large body and
then close -- then stops the proxy with SIGTERM and checks:

- no warning or error in the proxy's log (injected faults are logged as info);
- the proxy's RSS after warm-up stays flat (growth under ``--rss-slack`` MB), and it holds
  no more connections after the load than before it;
- every request the clients made is in the decision log exactly once, with the outcome
  the client saw (status, truncated body, reset, closed; ``client_disconnected`` for a
  client that left mid-upload);
- ``/stats`` (requests; per rule seen and injected), the decision log and the metrics
  (requests, outcomes, faults per rule, statuses) agree exactly, rule by rule and
  outcome by outcome: nothing lost, nothing double-counted;
- every untouched answer arrived byte-identical, and every untouched upload reached the
  upstream byte-identical.

Prints the figures, and writes them as JSON with ``--json PATH``. Exit 0 when all hold.
"""

from __future__ import annotations

import argparse
import collections
import gc
import hashlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import urllib3

SCENARIO = """\
name: soak
description: A bit of everything, at once, for a long time.
rules:
  - name: unavailable
    match: {path: "/api/*"}
    probability: 0.08
    fault: {type: error, status: 503, headers: {Retry-After: "1"}}
  - name: slow
    match: {path: "/api/*"}
    probability: 0.2
    fault: {type: latency, delay: 40ms, jitter: 20ms}
  - name: reset
    match: {path: "/api/*"}
    probability: 0.02
    fault: {type: abort, how: reset}
  - name: hangup
    probability: 0.02
    fault: {type: abort, how: close}
  - name: gateway-timeout
    match: {method: POST}
    probability: 0.05
    fault: {type: timeout, after: 100ms, then: 504}
  - name: cut
    match: {path: "/data/*"}
    probability: 0.06
    fault: {type: malformed, mode: truncate, keep: 0.3}
  - name: trickle
    match: {path: "/big/*"}
    probability: 0.2
    fault: {type: throttle, rate: 1MB/s}
  - name: quota
    match: {path: "/limited/*"}
    fault: {type: rate_limit, limit: 2, per: 1s}
  - name: bad-gateway
    probability: 0.02
    fault: {type: error, status: 502, on: response}
  - name: upload-refused
    match: {path: "/upload/*"}
    probability: 0.08
    fault: {type: error, status: 413}
  - name: upload-slow
    match: {path: "/upload/*"}
    probability: 0.15
    fault: {type: latency, delay: 30ms}
"""

#: each rule's match block of SCENARIO as (method, path) -> bool, in the same order: what
#: a rule saw ("seen" in /stats) is recomputed from the decision log with these (the engine
#: tries the rules in order and stops at the first that fires)
MATCHES: dict[str, Any] = {
    "unavailable": lambda method, path: path.startswith("/api/"),
    "slow": lambda method, path: path.startswith("/api/"),
    "reset": lambda method, path: path.startswith("/api/"),
    "hangup": lambda method, path: True,
    "gateway-timeout": lambda method, path: method == "POST",
    "cut": lambda method, path: path.startswith("/data/"),
    "trickle": lambda method, path: path.startswith("/big/"),
    "quota": lambda method, path: path.startswith("/limited/"),
    "bad-gateway": lambda method, path: True,
    "upload-refused": lambda method, path: path.startswith("/upload/"),
    "upload-slow": lambda method, path: path.startswith("/upload/"),
}

#: bodies from this size on are streamed by the proxy (decided from the head)
STREAMED = 64 * 1024


# ----------------------------------------------------------------------------- upstream


@lru_cache(maxsize=64)
def body_for(size: int) -> bytes:
    return random.Random(size).randbytes(size)


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self) -> bytes | None:
        """The request body, either framing; None when the client (the proxy) left mid-body."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line.endswith(b"\n"):
                    return None
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                chunk = self.rfile.read(size + 2)
                if len(chunk) < size + 2:
                    return None
                parts.append(chunk[:size])
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        return received if len(received) == length else None

    def handle_one(self) -> None:
        try:
            received = self.read_body()
        except (OSError, ValueError):
            received = None
        if received is None:
            self.close_connection = True
            return
        path = self.path.split("?", 1)[0]
        tail = path.rsplit("/", 1)[-1]
        if tail.isdigit() and not path.startswith("/upload/"):
            body, kind = body_for(int(tail)), "application/octet-stream"
        else:
            doc = {"path": path, "got": hashlib.sha256(received).hexdigest()}
            body, kind = json.dumps(doc).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = handle_one


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the proxy hung up on us (a client left mid-upload, a reset fault): expected


# ----------------------------------------------------------------------------- clients


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def classify(exc: BaseException) -> str:
    """The outcome a client-side exception stands for, in decision-log words."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    names = []
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        names.append(e)
        stack.extend([e.__cause__, e.__context__])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    if any(isinstance(e, http.client.RemoteDisconnected) for e in names):
        return "closed"  # (a subclass of ConnectionResetError: test it first)
    if any(isinstance(e, ConnectionResetError) for e in names):
        return "reset"
    if any(
        isinstance(e, http.client.IncompleteRead | urllib3.exceptions.IncompleteRead) for e in names
    ):
        return "truncated"
    if any(isinstance(e, requests.exceptions.ChunkedEncodingError) for e in names):
        return "truncated"
    if any(isinstance(e, requests.Timeout) for e in names):
        return "client_timeout"
    return f"other:{type(exc).__name__}: {exc}"


class Load:
    """``workers`` threads, each with its own pooled session, at ``rate`` requests/s in all.

    A share of the requests (``churn``) goes on a fresh connection closed after it; a
    share are uploads (small and >= 64 KB, content-length and chunked); a share
    (``leavers``) are raw-socket clients that send the head and part of a large body and
    then close the connection.
    """

    def __init__(
        self,
        base: str,
        workers: int,
        rate: float,
        seed: int,
        churn: float = 0.25,
        leavers: float = 0.05,
    ) -> None:
        self.base = base
        host, port = base.rsplit("//", 1)[-1].rsplit(":", 1)
        self.address = (host, int(port))
        self.workers = workers
        self.rate = rate
        self.seed = seed
        self.churn = churn
        self.leavers = leavers
        self.outcomes: dict[str, tuple[str, int | None]] = {}
        #: request id -> what it was: "get", "upload-small", "upload-large", "leaver"
        self.kinds: dict[str, str] = {}
        self.fresh_connections = 0
        self.corrupt: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def upload(self, rng: random.Random) -> tuple[str, bytes, bool]:
        """A path, a body (half of them >= 64 KB, streamed by the proxy) and its framing."""
        large = rng.random() < 0.5
        size = rng.randint(STREAMED, 1_000_000) if large else rng.randint(0, 20_000)
        return f"/upload/{rng.randint(1, 9)}", rng.randbytes(size), rng.random() < 0.5

    def request(
        self, session: requests.Session, rng: random.Random, rid: str
    ) -> tuple[str, int | None]:
        kind = rng.random()
        chunked = False
        if kind < 0.40:
            method, path, data = "GET", f"/api/item-{rng.randint(1, 50)}", None
        elif kind < 0.52:
            method, path = "POST", f"/api/orders-{rng.randint(1, 9)}"
            data = rng.randbytes(rng.randint(0, 20_000))
        elif kind < 0.68:
            method, path, data = "GET", f"/data/{rng.randint(1, 100_000)}", None
        elif kind < 0.75:
            method, path, data = "GET", "/big/200000", None
        elif kind < 0.80:
            method, path, data = "GET", f"/limited/{rng.randint(1, 3)}", None
        elif kind < 0.84:
            method, path, data = "PUT", "/plain", rng.randbytes(rng.randint(0, 3000))
        else:
            method = "POST"
            path, data, chunked = self.upload(rng)
            with self.lock:
                self.kinds[rid] = "upload-large" if len(data) >= STREAMED else "upload-small"
        url = f"{self.base}{path}?soak={rid}"
        body: Any = data
        if chunked and data is not None:  # a generator: requests sends it chunked
            body = (data[i : i + 16384] for i in range(0, max(len(data), 1), 16384))
        try:
            with session.request(method, url, data=body, timeout=30, stream=True) as r:
                raw = r.raw.read(decode_content=False)
                r.raw.close()
                if r.headers.get("X-Chaos-Rule") is None and r.status_code == 200:
                    tail = path.rsplit("/", 1)[-1]
                    if path.startswith("/upload/") and data is not None:
                        got = json.loads(raw).get("got")
                        if got != hashlib.sha256(data).hexdigest():
                            with self.lock:
                                self.corrupt.append(rid)
                    elif tail.isdigit() and raw != body_for(int(tail)):
                        with self.lock:
                            self.corrupt.append(rid)
                length = r.headers.get("Content-Length")
                if length is not None and len(raw) < int(length):
                    return "truncated", r.status_code
                return "response", r.status_code
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            return classify(exc), None

    def leave_mid_upload(self, rng: random.Random, rid: str) -> tuple[str, int | None]:
        """Send a head announcing a large body and part of it, then close. What the client
        saw before it left: nothing ("client_disconnected"), or an answer / a hang-up the
        proxy sent first (a fault decided from the head)."""
        path = f"/upload/{rng.randint(1, 9)}" if rng.random() < 0.6 else "/plain-upload"
        total = rng.randint(300_000, 2_000_000)
        part = rng.randint(STREAMED + 1, 200_000)
        chunked = rng.random() < 0.5
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
        head = f"POST {path}?soak={rid} HTTP/1.1\r\nHost: soak\r\n{framing}\r\n\r\n"
        body = f"{part:x}\r\n".encode() + b"u" * part + b"\r\n" if chunked else b"u" * part
        with self.lock:
            self.kinds[rid] = "leaver"
        sock = socket.create_connection(self.address, timeout=10)
        try:
            sock.sendall(head.encode())
            sock.sendall(body)
            # the proxy reads the head and decides; then the client gives up
            time.sleep(0.05 + rng.random() * 0.1)
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return "client_disconnected", None
            first = sock.recv(65536)
            if not first:
                return "closed", None
            return "response", int(first.split(b" ", 2)[1])
        except ConnectionResetError:
            return "reset", None
        except BrokenPipeError:
            return "closed", None
        finally:
            sock.close()

    def worker(self, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        session = requests.Session()
        session.trust_env = False
        interval = self.workers / self.rate
        due = time.monotonic() + rng.random() * interval
        i = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if now < due:
                self.stop.wait(due - now)
                continue
            due = max(due + interval, now - interval)
            rid = f"w{n}-{i}"
            i += 1
            pick = rng.random()
            if pick < self.leavers:
                outcome = self.leave_mid_upload(rng, rid)
            elif pick < self.leavers + self.churn:
                with requests.Session() as fresh:  # a client that comes and goes
                    fresh.trust_env = False
                    outcome = self.request(fresh, rng, rid)
                with self.lock:
                    self.fresh_connections += 1
            else:
                outcome = self.request(session, rng, rid)
            with self.lock:
                self.outcomes[rid] = outcome
        session.close()

    def run(self, seconds: float, on_tick: Any) -> None:
        threads = [
            threading.Thread(target=self.worker, args=(n,), daemon=True)
            for n in range(self.workers)
        ]
        for t in threads:
            t.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            on_tick()
        self.stop.set()
        for t in threads:
            t.join(60)


# ----------------------------------------------------------------------------- the run


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                "soak: the proxy exited during startup:\n"
                + (proc.stdout.read() if proc.stdout else "")
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise SystemExit("soak: the proxy did not become ready")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connection_count(pid: int) -> int:
    """The TCP sockets ``pid`` holds that are not listening (connections, in any state):
    a listener opened on first use (the throttle relay's) is not a leak, a connection is."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" and fields[9] in inodes:  # 0A: LISTEN
                count += 1
    return count


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text ``text`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}{{{re.escape(want)}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name``: its labels (sorted pairs) -> value."""
    out = {}
    for labels, value in re.findall(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        pairs = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)))
        out[pairs] = float(value)
    return out


def reconcile(records: list[dict[str, Any]], stats: dict[str, Any], metrics: str) -> list[str]:
    """Every way the proxy counted its requests, against each other: /stats (requests, per
    rule seen and injected), the decision log (records, rules, outcomes, statuses) and the
    metrics (requests, outcomes, faults per rule, client statuses). Returns the differences."""
    diffs = []
    log_requests = len(records)
    metrics_requests = metric(metrics, "chaosproxy_requests_total")
    if not stats["requests"] == log_requests == metrics_requests:
        diffs.append(
            f"requests: /stats {stats['requests']}, decision log {log_requests}, "
            f"metrics {metrics_requests:g}"
        )
    if stats["injected"] != sum(1 for r in records if r["rule"]):
        diffs.append(f"injected: /stats {stats['injected']}, decision log differs")
    order = [rule["name"] for rule in stats["rules"]]
    faults: collections.Counter[str] = collections.Counter()
    for labels, value in metric_samples(metrics, "chaosproxy_faults_injected_total").items():
        faults[dict(labels)["rule"]] += int(value)
    for rule in stats["rules"]:
        name = rule["name"]
        logged = sum(1 for r in records if r["rule"] == name)
        if not rule["injected"] == logged == faults[name]:
            diffs.append(
                f"rule {name} injected: /stats {rule['injected']}, decision log {logged}, "
                f"metrics {faults[name]}"
            )
        # seen: the requests that reached this rule (no earlier rule fired) and matched it
        index = order.index(name)
        matches = MATCHES.get(name)
        if matches is None:
            diffs.append(f"rule {name}: no match predicate in the soak")
            continue
        seen = sum(
            1
            for r in records
            if matches(r["method"], r["path"])
            and (r["rule"] is None or order.index(r["rule"]) >= index)
        )
        if rule["seen"] != seen:
            diffs.append(f"rule {name} seen: /stats {rule['seen']}, decision log {seen}")
    unknown_rules = set(faults) - set(order)
    if unknown_rules:
        diffs.append(f"metrics count faults of rules /stats does not know: {unknown_rules}")
    log_outcomes = collections.Counter(r["outcome"] for r in records)
    metric_outcomes = {
        dict(labels)["outcome"]: int(value)
        for labels, value in metric_samples(metrics, "chaosproxy_outcomes_total").items()
        if value
    }
    if dict(log_outcomes) != metric_outcomes:
        diffs.append(f"outcomes: decision log {dict(log_outcomes)}, metrics {metric_outcomes}")
    log_status = collections.Counter(str(r["status"]) for r in records if r["status"] is not None)
    metric_status = {
        dict(labels)["code"]: int(value)
        for labels, value in metric_samples(metrics, "chaosproxy_responses_total").items()
        if value
    }
    if dict(log_status) != metric_status:
        diffs.append(f"client statuses: decision log {dict(log_status)}, metrics {metric_status}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second in all (60)")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds (default 20%% of the run, at most 120)"
    )
    parser.add_argument(
        "--rss-slack", type=float, default=None, help="MB of growth allowed after warm-up"
    )
    parser.add_argument(
        "--churn", type=float, default=0.25, help="share of requests on a fresh connection"
    )
    parser.add_argument(
        "--leavers", type=float, default=0.05, help="share of clients that leave mid-upload"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the proxy log and decision log")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(120.0, args.seconds * 0.2)
    slack_mb = (
        args.rss_slack if args.rss_slack is not None else (8.0 if args.seconds >= 300 else 12.0)
    )
    exe = shutil.which("chaosproxy", path=str(Path(sys.executable).parent)) or shutil.which(
        "chaosproxy"
    )
    if exe is None:
        raise SystemExit("soak: chaosproxy is not installed (make soak installs it)")

    work = Path(tempfile.mkdtemp(prefix="chaosproxy-soak-"))
    scenario, decisions = work / "soak.yaml", work / "decisions.jsonl"
    scenario.write_text(SCENARIO)
    upstream = UpstreamServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [exe, "run", "--upstream", f"http://127.0.0.1:{upstream.server_address[1]}",
         "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
         "--scenario", str(scenario), "--seed", str(args.seed),
         "--log-format", "json", "--decision-log", str(decisions)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    log_lines: list[str] = []
    reader = threading.Thread(target=lambda: log_lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    control = f"http://127.0.0.1:{admin}"
    wait_ready(f"{control}/healthz", proc)
    print(
        f"soak: {args.seconds:g}s at ~{args.rate:g} req/s with {args.workers} clients; "
        f"proxy pid {proc.pid}"
    )

    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    last_print = [started]

    def tick() -> None:
        now = time.monotonic()
        samples.append((now - started, rss_kb(proc.pid)))
        if now - last_print[0] >= 60:
            last_print[0] = now
            print(
                f"  {now - started:5.0f}s  {len(load.outcomes)} requests  "
                f"RSS {samples[-1][1] / 1024:.1f} MB",
                flush=True,
            )

    settle_deadline = time.monotonic() + 5  # the health check's connection closes first
    while connection_count(proc.pid) and time.monotonic() < settle_deadline:
        time.sleep(0.05)
    fds_start, connections_start = fd_count(proc.pid), connection_count(proc.pid)
    load = Load(
        f"http://127.0.0.1:{port}",
        args.workers,
        args.rate,
        args.seed,
        churn=args.churn,
        leavers=args.leavers,
    )
    load.run(args.seconds, tick)
    elapsed = time.monotonic() - started
    # urllib3 drops some connections it will not reuse (a body left unread after an error)
    # without closing them; they close when collected: collect them now, so that what stays
    # open at the proxy is the proxy's doing
    gc.collect()
    # the proxy notices the last leavers and closed keep-alive connections a moment later:
    # wait until what it counted is recorded and its fds are back (or 20 s passed)
    settle_deadline = time.monotonic() + 20
    while True:
        stats = requests.get(f"{control}/stats", timeout=10).json()
        metrics_text = requests.get(f"{control}/metrics", timeout=10).text
        fds_end, connections_end = fd_count(proc.pid), connection_count(proc.pid)
        recorded = metric(metrics_text, "chaosproxy_requests_total")
        settled = recorded == stats["requests"] and connections_end <= connections_start
        if settled or time.monotonic() > settle_deadline:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    reader.join(10)
    upstream.shutdown()

    # ------------------------------------------------------------------ checks
    records = [json.loads(line) for line in decisions.read_text().splitlines() if line.strip()]
    by_id: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for rec in records:
        rid = rec["url"].rsplit("soak=", 1)[-1]
        by_id[rid].append(rec)
    missing = [rid for rid in load.outcomes if rid not in by_id]
    doubled = [rid for rid, recs in by_id.items() if len(recs) > 1]
    unknown = [rid for rid in by_id if rid not in load.outcomes]
    mismatched = []
    for rid, (outcome, status) in load.outcomes.items():
        recs = by_id.get(rid)
        if not recs:
            continue
        rec = recs[0]
        # a status is only comparable when the client read one (a cut body raises)
        expected = (rec["outcome"], rec["status"] if rec["outcome"] == "response" else None)
        got = (outcome, status if outcome == "response" else None)
        if expected != got:
            mismatched.append(f"{rid}: client {got}, decision log {expected} (rule {rec['rule']})")
    reconciliation = reconcile(records, stats, metrics_text)

    problems_in_log = []
    for line in log_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            problems_in_log.append(line.rstrip())
            continue
        if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            problems_in_log.append(f"{entry.get('level')} {entry.get('message')}")

    after = [kb for t, kb in samples if t >= warmup]
    rss_start = samples[0][1] if samples else 0
    rss_warm = after[0] if after else 0
    rss_end = samples[-1][1] if samples else 0
    rss_peak_after = max(after) if after else 0
    rss_growth_mb = (rss_end - rss_warm) / 1024
    client_counts = collections.Counter(
        f"{o} {s}" if s is not None else o for o, s in load.outcomes.values()
    )
    kinds = collections.Counter(load.kinds.get(rid, "other") for rid in load.outcomes)
    per_rule_log = collections.Counter(rec["rule"] for rec in records if rec["rule"])
    figures = {
        "seconds": round(elapsed, 1),
        "requests": len(load.outcomes),
        "rate": round(len(load.outcomes) / elapsed, 1),
        "kinds": dict(sorted(kinds.items())),
        "fresh_connections": load.fresh_connections,
        "decision_records": len(records),
        "stats_requests": stats["requests"],
        "metrics_requests": metric(metrics_text, "chaosproxy_requests_total"),
        "injected": stats["injected"],
        "per_rule": dict(sorted(per_rule_log.items())),
        "per_outcome": dict(sorted(collections.Counter(r["outcome"] for r in records).items())),
        "client_outcomes": dict(sorted(client_counts.items())),
        "leaver_outcomes": dict(
            sorted(
                collections.Counter(
                    by_id[rid][0]["outcome"]
                    for rid, kind in load.kinds.items()
                    if kind == "leaver" and rid in by_id
                ).items()
            )
        ),
        "leaver_rules": dict(
            sorted(
                collections.Counter(
                    by_id[rid][0]["rule"] or "-"
                    for rid, kind in load.kinds.items()
                    if kind == "leaver" and rid in by_id
                ).items()
            )
        ),
        "upload_outcomes": {
            kind: dict(
                sorted(
                    collections.Counter(
                        f"{o} {s}" if s is not None else o
                        for rid, (o, s) in load.outcomes.items()
                        if load.kinds.get(rid) == kind
                    ).items()
                )
            )
            for kind in ("upload-small", "upload-large")
        },
        "missing": len(missing),
        "double_counted": len(doubled),
        "unknown": len(unknown),
        "mismatched": len(mismatched),
        "stats_match": not reconciliation,
        "reconciliation": reconciliation,
        "corrupt_bodies": len(load.corrupt),
        "proxy_log_problems": len(problems_in_log),
        "rss_mb": {
            "start": round(rss_start / 1024, 1),
            "after_warmup": round(rss_warm / 1024, 1),
            "peak_after_warmup": round(rss_peak_after / 1024, 1),
            "end": round(rss_end / 1024, 1),
        },
        "rss_growth_after_warmup_mb": round(rss_growth_mb, 1),
        "fds": {"start": fds_start, "end": fds_end},
        "connections": {"start": connections_start, "end": connections_end},
        "proxy_exit": proc.returncode,
    }
    failures = []
    if missing or doubled or unknown or mismatched:
        failures.append(
            f"decision log vs clients: {len(missing)} missing, {len(doubled)} double, "
            f"{len(unknown)} unknown, {len(mismatched)} mismatched"
        )
        failures.extend(f"  {m}" for m in mismatched[:10])
        failures.extend(f"  missing: {m} {load.kinds.get(m)}" for m in missing[:5])
    if reconciliation:
        failures.append("/stats, decision log and metrics disagree:")
        failures.extend(f"  {r}" for r in reconciliation[:20])
    if load.corrupt:
        failures.append(
            f"{len(load.corrupt)} untouched answers differ from the upstream's: {load.corrupt[:5]}"
        )
    if problems_in_log:
        failures.append(f"{len(problems_in_log)} warnings/errors in the proxy log:")
        failures.extend(f"  {p}" for p in problems_in_log[:10])
    if rss_growth_mb > slack_mb:
        failures.append(f"RSS grew {rss_growth_mb:.1f} MB after warm-up (allowed {slack_mb:g} MB)")
    if connections_end > connections_start:
        failures.append(
            f"the proxy holds {connections_end} connections after the load, "
            f"{connections_start} before it"
        )
    if proc.returncode != 0:
        failures.append(f"the proxy exited with {proc.returncode} on SIGTERM")
    if not load.outcomes:
        failures.append("no requests were made")

    print(
        f"soak: {figures['requests']} requests in {figures['seconds']}s ({figures['rate']}/s), "
        f"{figures['injected']} faults injected\n"
        f"  kinds: {figures['kinds']}; on fresh connections: {load.fresh_connections}\n"
        f"  client outcomes: {figures['client_outcomes']}\n"
        f"  decision log outcomes: {figures['per_outcome']} "
        f"(leavers: {figures['leaver_outcomes']}, by rule {figures['leaver_rules']})\n"
        f"  uploads: {figures['upload_outcomes']}\n"
        f"  per rule: {figures['per_rule']}\n"
        f"  decision log: {len(records)} records; /stats {stats['requests']}; metrics "
        f"{figures['metrics_requests']:g}; missing {len(missing)}, double {len(doubled)}, "
        f"unknown {len(unknown)}, mismatched {len(mismatched)}; "
        f"/stats = decision log = metrics, rule by rule and outcome by outcome: "
        f"{not reconciliation}\n"
        f"  proxy log warnings/errors: {len(problems_in_log)}; "
        f"corrupt untouched bodies: {len(load.corrupt)}\n"
        f"  RSS MB: start {figures['rss_mb']['start']}, after warm-up ({warmup:g}s) "
        f"{figures['rss_mb']['after_warmup']}, peak {figures['rss_mb']['peak_after_warmup']}, "
        f"end {figures['rss_mb']['end']} (growth {rss_growth_mb:+.1f}, allowed {slack_mb:g}); "
        f"fds start {fds_start}, end {fds_end}; "
        f"connections start {connections_start}, end {connections_end}"
    )
    if args.json:
        args.json.write_text(json.dumps({**figures, "failures": failures}, indent=2) + "\n")
    if args.keep:
        (work / "proxy.log").write_text("".join(log_lines))
        print(f"  kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("soak: FAILED\n" + "\n".join(failures))
        return 1
    print("soak: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
