"""``python -m bench.control_api``: control API latency while the proxy serves at half capacity.

The issue's target: with the proxy serving traffic at half its capacity, admin calls
answer with p99 under 20 ms. Measures the capacity (wrk, 8 connections, the 20-rule
passthrough scenario against nginx), then keeps wrk at about half of it (each
connection pauses between requests) while one keep-alive client calls /healthz,
/stats, /scenario, /metrics and /decisions?limit=10 in turn every 10 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import percentile
from bench.procs import free_port, start, wait_port
from bench.upstream import Upstream

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "passthrough-20.yaml"
PATHS = ("/healthz", "/stats", "/scenario", "/metrics", "/decisions?limit=10")
TARGET_P99_MS = 20.0


def _wrk(url: str, seconds: float, script: str | None = None) -> float:
    cmd = ["wrk", "-t1", "-c8", f"-d{max(1, round(seconds))}s", url]
    if script:
        cmd[4:4] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(m.group(1))


def _pause_script(seconds: float) -> str:
    """A wrk script making each connection pause ``seconds`` before each request."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(f"function delay() return {seconds * 1000:.2f} end\n")
    return lua.name


def probe(port: int, seconds: float, interval: float = 0.01) -> dict[str, list[float]]:
    """Call the admin paths in turn on one keep-alive connection; latencies in ms by path."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out: dict[str, list[float]] = {p: [] for p in PATHS}
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        path = PATHS[i % len(PATHS)]
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        out[path].append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise RuntimeError(f"{path} answered {r.status}")
        i += 1
        time.sleep(interval)
    conn.close()
    return out


def measure(seconds: float) -> dict[str, Any]:
    with Upstream(free_port(), free_port()) as up:
        port, admin = free_port(), free_port()
        cmd = [sys.executable, "-m", "chaosproxy.cli", "run", "--upstream", up.url,
               "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
               "--scenario", str(SCENARIO), "-q"]  # fmt: skip
        proc = start("chaosproxy", cmd)
        try:
            wait_port(port, proc=proc)
            wait_port(admin, proc=proc)
            url = f"http://127.0.0.1:{port}/bench"
            _wrk(url, 2)  # warm-up
            capacity = _wrk(url, seconds)
            idle = probe(admin, min(seconds, 5))
            # 8 connections, each pausing between requests: calibrate the pause so that
            # together they send about capacity / 2 (rate = 8 / (pause + service time))
            target = capacity / 2
            pause = 8 / target
            for _ in range(3):
                script = _pause_script(pause)
                rate = _wrk(url, 2, script)
                Path(script).unlink()
                service = max(0.0, 8 / rate - pause)
                pause = max(0.0, 8 / target - service)
            lua = _pause_script(pause)
            load = subprocess.Popen(
                ["wrk", "-t1", "-c8", f"-d{round(seconds) + 3}s", "-s", lua, url],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.5)
            busy = probe(admin, seconds)
            out, _ = load.communicate(timeout=seconds + 60)
            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
            served = float(m.group(1)) if m else float("nan")
            Path(lua).unlink()
        finally:
            proc.stop()

    def summary(by_path: dict[str, list[float]]) -> dict[str, Any]:
        every = sorted(v for values in by_path.values() for v in values)
        return {
            "calls": len(every),
            "p50_ms": round(percentile(every, 50), 2),
            "p99_ms": round(percentile(every, 99), 2),
            "max_ms": round(every[-1], 2),
            "by_path_p99_ms": {
                p: round(percentile(sorted(v), 99), 2) for p, v in by_path.items() if v
            },
        }

    return {
        "capacity_rps": round(capacity, 1),
        "served_rps_during_probe": round(served, 1),
        "idle": summary(idle),
        "busy": summary(busy),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.control_api", description=__doc__)
    p.add_argument("--seconds", type=float, default=15, help="length of each run (15)")
    p.add_argument("--json", action="store_true", help="print the raw result")
    args = p.parse_args(argv)
    result = measure(args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
    busy = result["busy"]
    share = result["served_rps_during_probe"] / result["capacity_rps"]
    ok = busy["p99_ms"] < TARGET_P99_MS
    print(
        f"capacity {result['capacity_rps']:.0f} req/s; during the probe the proxy served "
        f"{result['served_rps_during_probe']:.0f} req/s ({share:.0%}); admin calls: "
        f"idle p99 {result['idle']['p99_ms']} ms, busy p50 {busy['p50_ms']} ms, "
        f"p99 {busy['p99_ms']} ms (target < {TARGET_P99_MS:g} ms: {'met' if ok else 'MISSED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
