#!/usr/bin/env python3
"""Soak test: chaosproxy under moderate load with a mixed scenario, for a bounded time.

    python scripts/soak.py --seconds 600        # make soak (SOAK_SECONDS=600 by default)

Starts a local upstream (in this process) and ``chaosproxy run`` (its own process, so its
memory and log are its own), drives ``--workers`` clients at about ``--rate`` requests per
second in all, then stops the proxy with SIGTERM and checks:

- no warning or error in the proxy's log (injected faults are logged as info);
- the proxy's RSS after warm-up stays flat (growth under ``--rss-slack`` MB);
- every request the clients made is in the decision log exactly once, with the outcome
  the client saw (status, truncated body, reset, closed), and ``/stats`` counts per rule
  equal the decision log's: nothing lost, nothing double-counted;
- every untouched answer arrived byte-identical.

Prints the figures, and writes them as JSON with ``--json PATH``. Exit 0 when all hold.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import json
import os
import random
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
"""


# ----------------------------------------------------------------------------- upstream


@lru_cache(maxsize=64)
def body_for(size: int) -> bytes:
    return random.Random(size).randbytes(size)


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        tail = path.rsplit("/", 1)[-1]
        if tail.isdigit():
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
    """``workers`` threads, each with its own pooled session, at ``rate`` requests/s in all."""

    def __init__(self, base: str, workers: int, rate: float, seed: int) -> None:
        self.base = base
        self.workers = workers
        self.rate = rate
        self.seed = seed
        self.outcomes: dict[str, tuple[str, int | None]] = {}
        self.corrupt: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def request(
        self, session: requests.Session, rng: random.Random, rid: str
    ) -> tuple[str, int | None]:
        kind = rng.random()
        if kind < 0.45:
            method, path, data = "GET", f"/api/item-{rng.randint(1, 50)}", None
        elif kind < 0.60:
            method, path = "POST", f"/api/orders-{rng.randint(1, 9)}"
            data = rng.randbytes(rng.randint(0, 20_000))
        elif kind < 0.80:
            method, path, data = "GET", f"/data/{rng.randint(1, 100_000)}", None
        elif kind < 0.88:
            method, path, data = "GET", "/big/200000", None
        elif kind < 0.94:
            method, path, data = "GET", f"/limited/{rng.randint(1, 3)}", None
        else:
            method, path, data = "PUT", "/plain", rng.randbytes(rng.randint(0, 3000))
        url = f"{self.base}{path}?soak={rid}"
        try:
            with session.request(method, url, data=data, timeout=30, stream=True) as r:
                body = r.raw.read(decode_content=False)
                r.raw.close()
                if r.headers.get("X-Chaos-Rule") is None and r.status_code == 200:
                    tail = path.rsplit("/", 1)[-1]
                    if tail.isdigit() and body != body_for(int(tail)):
                        with self.lock:
                            self.corrupt.append(rid)
                length = r.headers.get("Content-Length")
                if length is not None and len(body) < int(length):
                    return "truncated", r.status_code
                return "response", r.status_code
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            return classify(exc), None

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
            outcome = self.request(session, rng, rid)
            with self.lock:
                self.outcomes[rid] = outcome

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

    load = Load(f"http://127.0.0.1:{port}", args.workers, args.rate, args.seed)
    load.run(args.seconds, tick)
    elapsed = time.monotonic() - started
    stats = requests.get(f"{control}/stats", timeout=10).json()
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
    per_rule_log = collections.Counter(rec["rule"] for rec in records if rec["rule"])
    per_rule_stats = {r["name"]: r["injected"] for r in stats["rules"] if r["injected"]}
    stats_match = dict(per_rule_log) == per_rule_stats and stats["requests"] == len(records)

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
    figures = {
        "seconds": round(elapsed, 1),
        "requests": len(load.outcomes),
        "rate": round(len(load.outcomes) / elapsed, 1),
        "decision_records": len(records),
        "injected": stats["injected"],
        "per_rule": dict(sorted(per_rule_log.items())),
        "client_outcomes": dict(sorted(client_counts.items())),
        "missing": len(missing),
        "double_counted": len(doubled),
        "unknown": len(unknown),
        "mismatched": len(mismatched),
        "stats_match": stats_match,
        "corrupt_bodies": len(load.corrupt),
        "proxy_log_problems": len(problems_in_log),
        "rss_mb": {
            "start": round(rss_start / 1024, 1),
            "after_warmup": round(rss_warm / 1024, 1),
            "peak_after_warmup": round(rss_peak_after / 1024, 1),
            "end": round(rss_end / 1024, 1),
        },
        "rss_growth_after_warmup_mb": round(rss_growth_mb, 1),
        "proxy_exit": proc.returncode,
    }
    failures = []
    if missing or doubled or unknown or mismatched:
        failures.append(
            f"decision log vs clients: {len(missing)} missing, {len(doubled)} double, "
            f"{len(unknown)} unknown, {len(mismatched)} mismatched"
        )
        failures.extend(f"  {m}" for m in mismatched[:10])
    if not stats_match:
        failures.append(
            f"/stats {per_rule_stats} ({stats['requests']} requests) != "
            f"decision log {dict(per_rule_log)} ({len(records)})"
        )
    if load.corrupt:
        failures.append(
            f"{len(load.corrupt)} untouched answers differ from the upstream's: {load.corrupt[:5]}"
        )
    if problems_in_log:
        failures.append(f"{len(problems_in_log)} warnings/errors in the proxy log:")
        failures.extend(f"  {p}" for p in problems_in_log[:10])
    if rss_growth_mb > slack_mb:
        failures.append(f"RSS grew {rss_growth_mb:.1f} MB after warm-up (allowed {slack_mb:g} MB)")
    if proc.returncode != 0:
        failures.append(f"the proxy exited with {proc.returncode} on SIGTERM")
    if not load.outcomes:
        failures.append("no requests were made")

    print(
        f"soak: {figures['requests']} requests in {figures['seconds']}s ({figures['rate']}/s), "
        f"{figures['injected']} faults injected\n"
        f"  client outcomes: {figures['client_outcomes']}\n"
        f"  per rule: {figures['per_rule']}\n"
        f"  decision log: {len(records)} records; missing {len(missing)}, double {len(doubled)}, "
        f"mismatched {len(mismatched)}; /stats matches: {stats_match}\n"
        f"  proxy log warnings/errors: {len(problems_in_log)}; "
        f"corrupt untouched bodies: {len(load.corrupt)}\n"
        f"  RSS MB: start {figures['rss_mb']['start']}, after warm-up ({warmup:g}s) "
        f"{figures['rss_mb']['after_warmup']}, peak {figures['rss_mb']['peak_after_warmup']}, "
        f"end {figures['rss_mb']['end']} (growth {rss_growth_mb:+.1f}, allowed {slack_mb:g})"
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
