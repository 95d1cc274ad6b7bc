"""``python -m bench`` (``make bench``): chaosproxy side by side with its peers, in one run.

Measures, against a fast local upstream (nginx when installed, else a Python server):
passthrough throughput and latency at c=1 and c=32 for the upstream directly, an nginx
hop, plain ``mitmdump`` in reverse mode (the same mitmproxy), ``chaosproxy run`` with a
20-rule scenario none of whose rules matches, and (``--workers``) several processes;
the accuracy of a 100 ms injected latency at c=1, 32 and 100; a passthrough probe while
1,000 connections are held by a ``timeout`` rule; RSS over 50,000 requests; the time
from start to the first proxied request; and 10,000 WebSocket messages echoed through
mitmdump and chaosproxy. ``--peers`` adds toxy (npm) when node is there.

Writes bench/results/<date>.json, .md and .png, and prints the table with a verdict on
each of the issue's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import load, procs, report, targets, websocket
from bench.procs import free_port
from bench.upstream import Upstream

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("throughput", "state", "accuracy", "held", "rss", "startup", "websocket")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine(tool: str, upstream: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from mitmproxy.version import VERSION

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "mitmproxy": VERSION,
        "load_tool": tool,
        "upstream": upstream,
        "host": socket.gethostname(),
    }


def first_proxied(url: str, timeout: float = 30.0) -> float:
    """Poll ``url`` until a 200 comes back; returns when (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = load.run_asyncio(url, 1, count=1)
            if r.requests == 1 and r.errors == 0:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"no answer from {url} within {timeout}s")


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of one proxy at one load level: requests, seconds, errors
    and CPU summed (so req/s is over all of them); p50, p90 and p99 each the median of
    the rounds' (not necessarily all from one round);
    ``rounds_rps`` each round's req/s, to show the spread."""
    if len(rounds) == 1:
        return rounds[0]
    out: dict[str, Any] = {
        "tool": rounds[0]["tool"],
        "connections": rounds[0]["connections"],
        "requests": sum(r["requests"] for r in rounds),
        "seconds": round(sum(r["seconds"] for r in rounds), 2),
        "errors": sum(r["errors"] for r in rounds),
    }
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        out[key] = statistics.median(r[key] for r in rounds)
    out["rps"] = round(out["requests"] / out["seconds"], 1) if out["seconds"] else 0.0
    cpu = [r for r in rounds if "cpu_us_per_request" in r]
    if cpu and len(cpu) == len(rounds):
        total = sum(r["cpu_us_per_request"] * r["requests"] for r in cpu)
        out["cpu_us_per_request"] = round(total / out["requests"]) if out["requests"] else 0
    out["rounds_rps"] = [r["rps"] for r in rounds]
    return out


def _in_turn(started: list[targets.Target], turn: int) -> list[targets.Target]:
    """``started``, beginning at the one whose turn it is (the order rotating)."""
    k = turn % len(started) if started else 0
    return started[k:] + started[:k]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.use_wrk = load.have_wrk() and not args.no_wrk
        self.seconds = args.duration
        self.notes: list[str] = []

    def measure(
        self,
        url: str,
        conns: int,
        target: targets.Target | None = None,
        seconds: float | None = None,
        *,
        warm: bool = True,
    ) -> dict[str, Any]:
        """One load run; with ``target``, also the proxy's CPU time per request, which the
        other processes on the machine disturb far less than requests per second."""
        if warm:  # a short warm-up so connection set-up and first-request costs are not measured
            load.run_asyncio(url, min(conns, 8), count=min(200, 20 * conns))
        proc = target.proc if target is not None else None
        cpu0 = proc.cpu_seconds() if proc else 0.0
        out = load.run(url, conns, seconds or self.seconds, use_wrk=self.use_wrk).as_dict()
        if proc and out["requests"]:
            out["cpu_us_per_request"] = round(1e6 * (proc.cpu_seconds() - cpu0) / out["requests"])
        return out

    # ------------------------------------------------------------------ sections

    def throughput(self, up: Upstream) -> list[dict[str, Any]]:
        """Every proxy is started first; then each load level runs in ``--rounds`` rounds
        that take the proxies in turn (the order rotating), so a machine whose speed drifts
        during the run (shared VMs do) slows every proxy alike. A row sums its rounds."""
        path = "/bench"
        runs: list[tuple[str, Callable[[], targets.Target]]] = [
            ("direct to upstream", lambda: targets.direct(up.url, "direct to upstream")),
        ]
        if up.hop_url:
            runs.append(("nginx hop", lambda: targets.direct(str(up.hop_url), "nginx hop")))
        else:
            self.notes.append("nginx hop: not measured (no nginx; the upstream is the Python one)")
        runs.append(("mitmdump", lambda: targets.mitmdump(up.url)))
        runs.append(("chaosproxy", lambda: targets.chaosproxy(up.url, "passthrough-20")))
        for n in self.args.workers:
            if n > 1:
                runs.append((f"chaosproxy --workers {n}", self._workers(up, n)))
        if self.toxy_ok:
            # both ways toxy can pass requests through: its 1 ms poison (the table)
            # is slower alone and faster under load (its timer batches requests)
            runs.append(("toxy (no-op poison)", lambda: targets.toxy(up.url, 0)))
            runs.append(("toxy (1 ms poison)", lambda: targets.toxy(up.url, 1)))
        rounds = self.args.rounds  # 1 or more (parse_args)
        seconds = self.round_seconds()
        with contextlib.ExitStack() as running:
            started = self._start_all("throughput", runs, running)
            parts: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for conns in (1, 32):
                for r in range(rounds):
                    for target in _in_turn(started, r):
                        _say(f"throughput: {target.name}, c={conns}, round {r + 1}/{rounds}")
                        one = self.measure(target.url + path, conns, target, seconds, warm=r == 0)
                        parts.setdefault((target.name, conns), []).append(one)
            return [
                {"proxy": t.name, **{f"c{c}": combine(parts[(t.name, c)]) for c in (1, 32)}}
                for t in started
            ]

    def state(self, up: Upstream) -> list[dict[str, Any]]:
        """``--state redis://`` against in memory, at c=32: requests every one of which a
        rule matches (each decided, through Redis with --state), and passthrough (no rule
        matches: Redis is never asked, so the cost should be the same). Rounds take the
        proxies in turn, as in the throughput section."""
        with contextlib.ExitStack() as running:
            redis = running.enter_context(targets.redis_server())
            store = f"redis://127.0.0.1:{redis.port}"
            runs: list[tuple[str, Callable[[], targets.Target]]] = []
            # one database each: two clusters, or each would adopt the other's scenario
            for db, scenario in enumerate(("decide-all", "passthrough-20")):
                for state in (None, f"{store}/{db}"):
                    label = f"{scenario}, {'--state redis' if state else 'in memory'}"
                    runs.append((label, self._state_target(up, scenario, state, label)))
            started = self._start_all("state", runs, running)
            seconds = self.round_seconds()
            parts: dict[str, list[dict[str, Any]]] = {}
            for r in range(self.args.rounds):
                for target in _in_turn(started, r):
                    _say(f"state: {target.name}, c=32, round {r + 1}/{self.args.rounds}")
                    one = self.measure(target.url + "/bench", 32, target, seconds, warm=r == 0)
                    parts.setdefault(target.name, []).append(one)
            rows = []
            for t in started:
                row: dict[str, Any] = {"proxy": t.name, "c32": combine(parts[t.name])}
                if "--state" in t.name and t.extra.get("admin"):
                    # decided alone because Redis missed the timeout: not Redis's decisions
                    row["fallbacks"] = procs.metric(
                        t.extra["admin"], "chaosproxy_state_fallbacks_total"
                    )
                rows.append(row)
        return rows

    @staticmethod
    def _state_target(
        up: Upstream, scenario: str, state: str | None, label: str
    ) -> Callable[[], targets.Target]:
        return lambda: targets.chaosproxy(up.url, scenario, state=state, name=label)

    def round_seconds(self) -> float:
        """How long each throughput round runs: --duration split over --rounds (wrk runs
        whole seconds)."""
        seconds = self.seconds / self.args.rounds
        return float(max(1, round(seconds))) if self.use_wrk else seconds

    @staticmethod
    def _workers(
        up: Upstream, n: int, scenario: str = "passthrough-20"
    ) -> Callable[[], targets.Target]:
        return lambda: targets.chaosproxy(up.url, scenario, workers=n)

    def accuracy(self, up: Upstream) -> list[dict[str, Any]]:
        runs: list[tuple[str, Callable[[], targets.Target]]] = [
            ("chaosproxy", lambda: targets.chaosproxy(up.url, "latency-100")),
            ("mitmdump + sleep addon", lambda: targets.mitmdump(up.url, script="naive_sleep.py")),
        ]
        for n in self.args.workers:
            if n > 1:
                runs.insert(1, (f"chaosproxy --workers {n}", self._workers(up, n, "latency-100")))
        if self.toxy_ok:
            runs.append(("toxy", lambda: targets.toxy(up.url, 100)))
        levels = (1, 32, 100)
        with contextlib.ExitStack() as running:
            started = self._start_all("accuracy", runs, running)
            # all started first, then each load level takes them in turn (the order
            # rotating): a machine whose speed drifts affects them alike
            results: dict[tuple[str, int], dict[str, Any]] = {}
            for i, conns in enumerate(levels):
                for target in _in_turn(started, i):
                    _say(f"accuracy: {target.name}, c={conns}")
                    results[(target.name, conns)] = self.measure(target.url + "/bench", conns)
        return [
            {"proxy": t.name, "connections": c, "result": results[(t.name, c)]}
            for t in started
            for c in levels
        ]

    def _start_all(
        self,
        section: str,
        runs: list[tuple[str, Callable[[], targets.Target]]],
        running: contextlib.ExitStack,
    ) -> list[targets.Target]:
        """Start each proxy of ``runs`` (stopped when ``running`` closes); one that will not
        start is noted and left out."""
        started: list[targets.Target] = []
        for label, make in runs:
            _say(f"{section}: starting {label}")
            try:
                started.append(running.enter_context(make()))
            except RuntimeError as exc:
                self.notes.append(f"{label}: not measured ({exc})")
        return started

    def held(self, up: Upstream) -> dict[str, Any]:
        n = self.args.held
        _say(f"held: {n} connections held, probe at c=1")
        with targets.chaosproxy(up.url, "hold") as target:
            admin = target.extra.get("admin")
            if admin is None:  # an older chaosproxy: nothing could tell what it holds
                raise RuntimeError("this chaosproxy has no control API to count held requests")
            idle = self.measure(target.url + "/bench", 1)

            async def busy_probe() -> tuple[dict[str, Any], int]:
                writers, _ = await load.hold_connections(target.url + "/hold", n)
                try:
                    # the proxy's own count, before and after the probe: a connection the
                    # proxy answered or closed would not show on the client's side at once
                    before = await asyncio.to_thread(procs.wait_held, admin, n)
                    r = await asyncio.to_thread(
                        load.run, target.url + "/bench", 1, self.seconds, use_wrk=self.use_wrk
                    )
                    after = await asyncio.to_thread(procs.held_requests, admin)
                    return r.as_dict(), min(before, after)
                finally:
                    for w in writers:
                        w.close()

            busy, connected = asyncio.run(busy_probe())
        return {"held": n, "connected": connected, "idle": idle, "busy": busy}

    def rss(self, up: Upstream) -> dict[str, Any]:
        n = self.args.rss_requests
        _say(f"rss: at least {n} requests")
        with targets.chaosproxy(up.url, "passthrough-20") as target:
            assert target.proc is not None
            load.run_asyncio(target.url + "/bench", 32, count=2000)
            before = target.proc.rss_mb()
            requests = errors = 0
            while requests < n:
                if self.use_wrk:  # in bursts of a few seconds until n are done
                    r = load.run_wrk(target.url + "/bench", 32, 5)
                else:
                    r = load.run_asyncio(target.url + "/bench", 32, count=n - requests)
                requests, errors = requests + r.requests, errors + r.errors
            after = target.proc.rss_mb()
        return {
            "requests": requests,
            "errors": errors,
            "before_mb": round(before, 1),
            "after_mb": round(after, 1),
            "growth_mb": round(after - before, 1),
        }

    def startup(self, up: Upstream) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, make in (
            ("chaosproxy", lambda: targets.chaosproxy(up.url, "passthrough-20")),
            ("mitmdump", lambda: targets.mitmdump(up.url)),
        ):
            _say(f"startup: {label}")
            took = []
            for _ in range(3):  # the median of three: one start on a busy moment is not it
                with make() as target:
                    took.append(first_proxied(target.url + "/bench") - target.started)
            out[label] = round(statistics.median(took), 3)
        return out

    def websocket(self, up: Upstream) -> list[dict[str, Any]]:
        """``--ws-messages`` messages echoed through one WebSocket, pipelined: plain mitmdump,
        chaosproxy with ws_* rules that match no socket, and chaosproxy with a rule whose
        0 % drop runs every message through the ws_* faults. ``--rounds`` rounds taking the
        proxies in turn; a row is the median round (seconds) and the proxy's CPU time per
        message over all rounds (steadier than seconds on a shared machine)."""
        n = self.args.ws_messages
        port = free_port()
        server = procs.start(
            "ws-echo", [sys.executable, "-m", "bench.websocket", "serve", str(port)]
        )
        try:
            procs.wait_port(port, proc=server)
            echo = f"http://127.0.0.1:{port}"

            def faulted() -> targets.Target:
                return targets.chaosproxy(echo, "ws-faulted")

            runs: list[tuple[str, Callable[[], targets.Target]]] = [
                ("mitmdump", lambda: targets.mitmdump(echo)),
                ("chaosproxy", lambda: targets.chaosproxy(echo, "ws-passthrough")),
                (
                    "chaosproxy, ws rule fires",
                    lambda: _named(faulted(), "chaosproxy, ws rule fires"),
                ),
            ]
            with contextlib.ExitStack() as running:
                started = self._start_all("websocket", runs, running)
                parts: dict[str, list[dict[str, Any]]] = {}
                for r in range(self.args.rounds):
                    for target in _in_turn(started, r):
                        _say(f"websocket: {target.name}, {n} messages, round {r + 1}")
                        proc = target.proc
                        cpu0 = proc.cpu_seconds() if proc else 0.0
                        one = websocket.echo_run(target.url.replace("http", "ws") + "/echo", n)
                        if proc is not None:
                            one["cpu_seconds"] = round(proc.cpu_seconds() - cpu0, 3)
                        parts.setdefault(target.name, []).append(one)
                return [_ws_row(t.name, parts[t.name]) for t in started]
        finally:
            server.stop()

    # ------------------------------------------------------------------ all

    def run(self) -> dict[str, Any]:
        args = self.args
        self.toxy_ok = False
        if args.peers:
            if targets.node_available():
                _say("peers: installing toxy from npm (cached in /tmp/chaosproxy-bench-toxy)")
                self.toxy_ok = targets.install_toxy(self.notes)
            else:
                self.notes.append("--peers: node/npm not found; toxy not measured")
        if 2 in args.workers and not targets.supports_workers():
            self.notes.append("this chaosproxy has no --workers; measured one process only")
            args.workers = [1]
        with Upstream(free_port(), free_port()) as up:
            tool = "wrk" if self.use_wrk else "bundled asyncio load generator"
            if not self.use_wrk:
                tool += " (--no-wrk)" if args.no_wrk else " (wrk not found)"
            _say(f"load generator: {tool}; upstream: {up.kind} at {up.url}")
            results: dict[str, Any] = {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(tool, up.kind),
                "seconds_per_run": self.seconds,
                "throughput_rounds": args.rounds,
                "quick": args.quick,
            }
            for section in SECTIONS:
                if section in args.sections:
                    try:
                        results[section] = getattr(self, section)(up)
                    except RuntimeError as exc:  # a proxy that would not start, say
                        self.notes.append(f"{section}: not measured ({exc})")
            if "throughput" in results:
                results["throughput_round_seconds"] = self.round_seconds()
        results["targets"] = report.judge(results)
        results["notes"] = self.notes
        return results


def _named(target: targets.Target, name: str) -> targets.Target:
    target.name = name
    return target


def _ws_row(name: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One proxy's WebSocket rounds as a row: the median round's seconds, every round's,
    the errors and CPU summed, CPU time per message (both directions count)."""
    seconds = sorted(r["seconds"] for r in rounds)
    relayed = sum(2 * r["echoed"] for r in rounds)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in rounds)
    return {
        "proxy": name,
        "messages": rounds[0]["messages"],
        "seconds": seconds[len(seconds) // 2],
        "rounds_seconds": [r["seconds"] for r in rounds],
        "errors": sum(r["errors"] for r in rounds),
        "cpu_us_per_message": round(1e6 * cpu / relayed, 1) if relayed else None,
    }


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    return parse


def _worker_counts(text: str) -> list[int]:
    counts = [_positive(int)(w.strip()) for w in text.split(",") if w.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("give one worker count or more, e.g. 1,2")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs (2 s, 100 held, 5,000 reqs)")
    p.add_argument("--peers", action="store_true", help="also measure toxy (needs node and npm)")
    p.add_argument(
        "--duration", type=_positive(float), help="seconds per load run (default 10; quick 2)"
    )
    p.add_argument(
        "--held", type=_positive(int), help="connections to hold (default 1000; quick 100)"
    )
    p.add_argument(
        "--rss-requests",
        type=_positive(int),
        help="requests for the RSS run, at least (default 50000; quick 5000)",
    )
    p.add_argument(
        "--workers",
        type=_worker_counts,
        default=[1, 2],
        help="worker counts to measure, comma-separated (1,2)",
    )
    p.add_argument(
        "--rounds",
        type=_positive(int),
        help="throughput: rounds taking the proxies in turn, --duration split over them "
        "(default 3; quick 1)",
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"what to measure, comma-separated (default all: {','.join(SECTIONS)})",
    )
    p.add_argument(
        "--ws-messages",
        type=_positive(int),
        help="websocket: messages echoed per round (default 10000; quick 2000)",
    )
    p.add_argument("--no-wrk", action="store_true", help="use the bundled load generator")
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="the directory results go to (bench/results); a run of only some sections "
        "writes <date>-partial.*, a quick one <date>-quick.*",
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    args = p.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 10.0)
    args.rounds = args.rounds or (1 if quick else 3)
    args.held = args.held or (100 if quick else 1000)
    args.rss_requests = args.rss_requests or (5000 if quick else 50000)
    args.ws_messages = args.ws_messages or (2000 if quick else 10000)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown or not args.sections:
        got = f"unknown sections {sorted(unknown)}" if unknown else "no sections"
        p.error(f"{got}; choose from {', '.join(SECTIONS)}")
    return args


def results_name(args: argparse.Namespace, now: dt.datetime) -> str:
    """``<date>``; ``<date>-quick`` for a quick run, ``<date>-partial`` for one of only some
    sections (neither takes the place of a full run's committed results)."""
    stamp = now.strftime("%Y-%m-%d")
    if args.quick:
        return stamp + "-quick"
    if set(args.sections) != set(SECTIONS):
        return stamp + "-partial"
    return stamp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = Bench(args).run()
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / results_name(args, dt.datetime.now(dt.UTC))
    base.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    text = report.markdown(results)
    base.with_suffix(".md").write_text(text)
    written = [base.with_suffix(".json"), base.with_suffix(".md")]
    if not args.no_chart:
        if report.chart(results, base.with_suffix(".png")):
            written.append(base.with_suffix(".png"))
        else:
            _say("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    print(text)
    _say("written: " + ", ".join(str(p) for p in written))
    return 0
