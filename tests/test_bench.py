"""The benchmark harness (bench/): its pieces, and a tiny end-to-end run, so it cannot rot."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import load, report
from bench.procs import free_port
from bench.upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/bench
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    52.10ms   10.20ms 120.00ms   80.00%
    Req/Sec   300.00     20.00   400.00     70.00%
  Latency Distribution
     50%   51.00ms
     75%   55.50ms
     90%  700.00us
     99%    1.09s
  6012 requests in 10.02s, 1.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:    600.00
Transfer/sec:    100.00KB
"""


def test_parse_wrk_reads_percentiles_rate_and_every_error() -> None:
    r = load.parse_wrk(WRK_OUTPUT, 32)
    assert (r.requests, r.seconds, r.connections) == (6012, 10.02, 32)
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == pytest.approx((51.0, 0.7, 1090.0))
    assert r.errors == 3 + 2 + 7
    assert r.rps == pytest.approx(600.0, rel=0.001)


def test_parse_wrk_refuses_output_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        load.parse_wrk("wrk: connection refused\n", 1)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 50) == 50.0
    assert load.percentile(values, 99) == 99.0
    assert load.percentile([3.0], 99) == 3.0


@pytest.mark.wire
def test_asyncio_generator_against_the_python_upstream() -> None:
    with Upstream(free_port(), free_port(), nginx=False) as up:
        assert up.kind == "python" and up.hop_url is None
        r = load.run_asyncio(up.url + "/bench", 4, count=200)
        bad = load.run_asyncio(f"http://127.0.0.1:{free_port()}/", 2, count=4)
    assert (r.requests, r.errors, r.connections) == (200, 0, 4)
    assert 0 < r.p50_ms <= r.p99_ms
    assert bad.requests == 0 and bad.errors == 4  # nothing listens: every try is an error


def _result(rps: float, p50: float, p99: float, errors: int = 0) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "errors": errors}


def test_judge_says_met_not_met_and_not_measured() -> None:
    results = {
        "throughput": [
            {"proxy": "mitmdump", "c1": _result(500, 1.7, 3), "c32": _result(570, 51, 109)},
            {"proxy": "chaosproxy", "c1": _result(700, 1.2, 2), "c32": _result(900, 30, 60, 2)},
        ],
        "accuracy": [{"proxy": "chaosproxy", "connections": 32, "result": _result(300, 101, 114)}],
        "rss": {"requests": 50000, "errors": 0, "before_mb": 80, "after_mb": 120, "growth_mb": 40},
        "startup": {"chaosproxy": 0.9},
    }
    verdicts = {t["target"]: t["met"] for t in report.judge(results)}
    assert verdicts["c=32 throughput >= 1.4x plain mitmdump"] is False  # 2 errors
    assert verdicts["c=1 added latency p50 below plain mitmdump's"] is True
    assert verdicts["100 ms injected at c=32: p50 in 100-105 ms, p99 <= 115 ms"] is True
    assert verdicts["RSS grows < 30 MB over 50000 requests"] is False
    assert verdicts["start to first proxied request < 1.5 s"] is True
    assert verdicts["c=32 throughput with --workers 2 >= toxy"] is None
    assert verdicts["1000 held connections: probe p50 within 2x of idle"] is None
    assert not any("--workers" in t and "injected" in t for t in verdicts)  # none measured


def test_judge_rates_injection_accuracy_per_worker_count_against_toxy() -> None:
    results = {
        "accuracy": [
            {"proxy": "chaosproxy", "connections": 32, "result": _result(300, 102, 121)},
            {"proxy": "chaosproxy", "connections": 100, "result": _result(900, 102, 150)},
            {
                "proxy": "chaosproxy --workers 2",
                "connections": 32,
                "result": _result(300, 102, 109),
            },
            {"proxy": "chaosproxy --workers 2", "connections": 100, "result": _result(9, 102, 127)},
            {"proxy": "toxy (100 ms poison)", "connections": 100, "result": _result(8, 116, 129)},
        ]
    }
    verdicts = {t["target"]: t["met"] for t in report.judge(results)}
    assert verdicts["100 ms injected at c=32: p50 in 100-105 ms, p99 <= 115 ms"] is False
    assert verdicts["100 ms injected at c=100: p50 and p99 better than toxy's"] is False
    assert (
        verdicts["100 ms injected at c=32 (--workers 2): p50 in 100-105 ms, p99 <= 115 ms"] is True
    )
    assert (
        verdicts["100 ms injected at c=100 (--workers 2): p50 and p99 better than toxy's"] is True
    )


def test_judge_wants_clean_runs_and_the_faster_toxy() -> None:
    def throughput(workers2: dict[str, float], noop: dict[str, float]) -> list[dict[str, Any]]:
        return [
            {"proxy": "chaosproxy --workers 4", "c32": _result(9000, 5, 9)},  # not the target's
            {"proxy": "chaosproxy --workers 2", "c32": workers2},
            {"proxy": "toxy (no-op poison)", "c32": noop},
            {"proxy": "toxy (1 ms poison)", "c32": _result(3100, 10, 20)},
        ]

    target = "c=32 throughput with --workers 2 >= toxy"
    slower = {
        t["target"]: t
        for t in report.judge(
            {"throughput": throughput(_result(3000, 10, 20), _result(2500, 12, 22))}
        )
    }[target]
    assert slower["met"] is False
    assert slower["value"] == "3000 vs 3100 req/s, toxy (1 ms poison), the faster toxy"
    faster = report.judge({"throughput": throughput(_result(3200, 9, 19), _result(2500, 12, 22))})
    assert {t["target"]: t["met"] for t in faster}[target] is True
    broken_peer = report.judge(
        {"throughput": throughput(_result(3200, 9, 19), _result(3300, 9, 19, errors=4))}
    )
    assert {t["target"]: t for t in broken_peer}[target][
        "met"
    ] is False  # toxy erred: no verdict for us

    accuracy = [
        {"proxy": "chaosproxy", "connections": 32, "result": _result(300, 102, 110, errors=1)},
        {"proxy": "chaosproxy", "connections": 100, "result": _result(900, 102, 120)},
        {"proxy": "toxy (100 ms poison)", "connections": 100, "result": _result(8, 116, 129, 2)},
    ]
    rss = {"requests": 50000, "errors": 3, "before_mb": 80, "after_mb": 81, "growth_mb": 1}
    verdicts = {t["target"]: t for t in report.judge({"accuracy": accuracy, "rss": rss})}
    c32 = verdicts["100 ms injected at c=32: p50 in 100-105 ms, p99 <= 115 ms"]
    assert c32["met"] is False and c32["value"] == "p50 102.0 / p99 110.0 ms; 1 errors"
    c100 = verdicts["100 ms injected at c=100: p50 and p99 better than toxy's"]
    assert c100["met"] is False and c100["value"].endswith("; toxy: 2 errors")
    assert verdicts["RSS grows < 30 MB over 50000 requests"]["met"] is False


@pytest.mark.e2e
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """A tiny real run: chaosproxy and mitmdump through the upstream, 100 ms injected, held
    connections, RSS."""
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--no-wrk",
        "--sections",
        "throughput,accuracy,held,rss",
        "--duration",
        "0.3",
        "--held",
        "20",
        "--rss-requests",
        "300",
        "--workers",
        "1",
        "--rounds",
        "2",
        "--out",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    assert "bundled asyncio load generator" in out.stderr  # says which tool it used
    (data,) = tmp_path.glob("*-quick.json")
    results = json.loads(data.read_text())
    rows = {row["proxy"]: row for row in results["throughput"]}
    assert {"direct to upstream", "mitmdump", "chaosproxy"} <= set(rows)
    for name in ("mitmdump", "chaosproxy"):
        assert rows[name]["c32"]["requests"] > 0 and rows[name]["c32"]["errors"] == 0
        assert len(rows[name]["c32"]["rounds_rps"]) == 2  # the proxies took turns twice
    accuracy = {(row["proxy"], row["connections"]): row["result"] for row in results["accuracy"]}
    assert set(accuracy) == {
        (name, c) for name in ("chaosproxy", "mitmdump + sleep addon") for c in (1, 32, 100)
    }
    assert all(r["errors"] == 0 and r["p50_ms"] >= 100 for r in accuracy.values())
    assert results["held"]["connected"] == 20 and results["held"]["busy"]["errors"] == 0
    assert results["rss"]["requests"] >= 300 and results["rss"]["errors"] == 0
    md = data.with_suffix(".md").read_text()
    assert "| chaosproxy |" in md and "| target (issue 7) |" in md
    assert "Throughput: 2 rounds of 0.15 s per load level" in md
    assert "| proxy | c=1 req/s (p50) | c=32 req/s (p50 / p99) |" in out.stdout
    assert rows["chaosproxy"]["c32"]["cpu_us_per_request"] > 0
    png = data.with_suffix(".png")
    if not _importable("matplotlib"):  # without the [bench] extra
        assert not png.exists() and "no chart: matplotlib is not installed" in out.stderr
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_scenarios_are_valid_and_passthrough_20_matches_nothing() -> None:
    from chaosproxy.core.engine import Engine, SimpleRequest
    from chaosproxy.core.scenario import resolve

    for path in sorted((ROOT / "bench" / "scenarios").glob("*.yaml")):
        resolve(str(path))  # raises ScenarioError with the located problems
    scenario, _ = resolve(str(ROOT / "bench" / "scenarios" / "passthrough-20.yaml"))
    assert sum(1 for _ in scenario.all_rules()) == 20
    engine = Engine(scenario)
    request = SimpleRequest("GET", "127.0.0.1", "/bench", headers=[("User-Agent", "wrk")])
    assert all(engine.decide(request) is None for _ in range(50))
    assert engine.stats()["injected"] == 0


def test_profile_summary_groups_samples_by_origin() -> None:
    from bench.profile import summarize

    collapsed = (
        "main (chaosproxy/cli/main.py:1);run (asyncio/base_events.py:2);hook (mitmproxy/server.py:3) 6\n"
        "main (chaosproxy/cli/main.py:1);run (asyncio/base_events.py:2);decide (chaosproxy/core/engine.py:9) 2\n"
        "main (chaosproxy/cli/main.py:1);write (asyncio/selector_events.py:5) 2\n"
    )
    text = summarize(collapsed)
    assert text.startswith("10 samples; self time by origin:")
    assert "mitmproxy    60.0%" in text and "chaosproxy   20.0%" in text
    assert "100.0%  main (chaosproxy/cli/main.py:1)" in text
    assert summarize("") == "no samples"


@pytest.mark.e2e
def test_wait_healthy_waits_for_200_and_reports_a_process_that_died() -> None:
    import http.server
    import threading

    from bench.procs import wait_healthy

    answers = [503, 503, 200]

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(answers.pop(0) if len(answers) > 1 else answers[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait_healthy(f"http://127.0.0.1:{server.server_port}/healthz")
        assert answers == [200]  # asked until the 200, not once
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(RuntimeError, match="did not answer 200"):
        wait_healthy(f"http://127.0.0.1:{free_port()}/healthz", timeout=0.2)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


@pytest.mark.e2e
def test_chaosproxy_target_with_workers_returns_once_every_worker_listens() -> None:
    """The port opens with the first worker; a load that starts then would keep all its
    kept-alive connections on that one worker."""
    import os

    from bench import targets
    from bench.procs import _children

    with Upstream(free_port(), free_port(), nginx=False) as up:
        with targets.chaosproxy(up.url, "passthrough-20", workers=2) as target:
            assert target.proc is not None
            listening = _listening_inodes(target.port)
            owners = set()
            for pid in _children(target.proc.pid):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    link = os.readlink(fd) if fd.is_symlink() else ""
                    if link.startswith("socket:[") and link[8:-1] in listening:
                        owners.add(pid)
            assert len(owners) == 2


def test_rounds_combine_into_one_row() -> None:
    from bench.run import combine

    def one(requests: int, p50: float, cpu: int) -> dict[str, object]:
        return {
            "tool": "wrk",
            "connections": 32,
            "requests": requests,
            "seconds": 2.0,
            "errors": 1,
            "p50_ms": p50,
            "p90_ms": p50 * 2,
            "p99_ms": p50 * 3,
            "rps": requests / 2,
            "cpu_us_per_request": cpu,
        }

    row = combine([one(1000, 5.0, 600), one(3000, 1.0, 400), one(2000, 9.0, 500)])
    assert row["requests"] == 6000 and row["seconds"] == 6.0 and row["errors"] == 3
    assert row["rps"] == 1000.0  # all the requests over all the seconds
    assert (row["p50_ms"], row["p99_ms"]) == (5.0, 15.0)  # the median round's
    assert row["cpu_us_per_request"] == round((600_000 + 1_200_000 + 1_000_000) / 6000)
    assert row["rounds_rps"] == [500.0, 1500.0, 1000.0]
    assert combine([one(10, 1.0, 1)]) == one(10, 1.0, 1)  # one round: as measured


def test_bad_options_are_refused_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.run import parse_args

    for argv, message in (
        (["--rounds", "0"], "argument --rounds: must be more than 0, not 0"),
        (["--duration", "-1"], "argument --duration: must be more than 0, not -1"),
        (["--workers", "x"], "argument --workers: not a number: 'x'"),
        (["--sections", "nosuch"], "unknown sections ['nosuch']"),
        (["--sections", ""], "no sections; choose from throughput"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert parse_args([]).rounds == 3 and parse_args(["--quick"]).rounds == 1
    assert parse_args(["--workers", "1, 2"]).workers == [1, 2]


def test_only_a_full_run_writes_the_dated_results() -> None:
    import datetime as dt

    from bench.run import parse_args, results_name

    now = dt.datetime(2026, 12, 1, 23, 0, tzinfo=dt.UTC)
    assert results_name(parse_args([]), now) == "2026-12-01"
    assert results_name(parse_args(["--sections", "throughput"]), now) == "2026-12-01-partial"
    assert results_name(parse_args(["--quick"]), now) == "2026-12-01-quick"


def test_judge_rates_the_websocket_passthrough_against_mitmdump() -> None:
    def row(name: str, seconds: float, errors: int = 0) -> dict:
        return {"proxy": name, "messages": 10000, "seconds": seconds, "errors": errors}

    def verdict(rows: list[dict]) -> dict:
        (found,) = [
            t for t in report.judge({"websocket": rows}) if t["target"].startswith("WebSocket")
        ]
        return found

    ok = verdict([row("mitmdump", 4.0), row("chaosproxy", 7.9)])
    assert ok["target"] == "WebSocket passthrough of 10,000 messages within 2x of mitmdump's time"
    assert ok["met"] is True and ok["value"] == "7.90 s vs 4.00 s (1.98x)"
    assert verdict([row("mitmdump", 4.0), row("chaosproxy", 8.1)])["met"] is False
    assert verdict([row("mitmdump", 4.0), row("chaosproxy", 1.0, errors=3)])["met"] is False
    assert verdict([row("chaosproxy", 1.0)])["met"] is None  # mitmdump not measured
    assert verdict([])["value"] == "not measured"


def test_ws_passthrough_scenario_matches_no_socket_and_ws_faulted_every_one() -> None:
    from chaosproxy.core.engine import Engine, SimpleRequest
    from chaosproxy.core.scenario import resolve

    upgrade = SimpleRequest("GET", "127.0.0.1", "/echo", headers=[("Upgrade", "websocket")])
    quiet, _ = resolve(str(ROOT / "bench" / "scenarios" / "ws-passthrough.yaml"))
    assert all(Engine(quiet).decide(upgrade) is None for _ in range(5))
    faulted, _ = resolve(str(ROOT / "bench" / "scenarios" / "ws-faulted.yaml"))
    decision = Engine(faulted).decide(upgrade)
    assert decision is not None and decision.faults[0].type == "ws_drop"


@pytest.mark.e2e
def test_websocket_section_end_to_end(tmp_path: Path) -> None:
    """A tiny real run of the WebSocket row: every message echoed through each proxy."""
    cmd = [sys.executable, "-m", "bench", "--sections", "websocket", "--ws-messages", "300"]
    cmd += ["--rounds", "1", "--no-chart", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    (data,) = tmp_path.glob("*-partial.json")
    rows = {row["proxy"]: row for row in json.loads(data.read_text())["websocket"]}
    assert set(rows) == {"mitmdump", "chaosproxy", "chaosproxy, ws rule fires"}
    for row in rows.values():
        assert row["messages"] == 300 and row["errors"] == 0 and len(row["rounds_seconds"]) == 1
        assert row["cpu_us_per_message"] > 0
    assert "| chaosproxy, ws rule fires |" in out.stdout
    assert "WebSocket passthrough of 300 messages within 2x of mitmdump's time" in out.stdout
