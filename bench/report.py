"""The benchmark's report: judging the issue's targets, a markdown table, a PNG chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- judging


def _tput(results: dict[str, Any], name: str, conc: str) -> dict[str, Any] | None:
    for row in results.get("throughput", []):
        if row["proxy"] == name:
            r = row.get(conc)
            return r if isinstance(r, dict) else None
    return None


def _acc(results: dict[str, Any], name: str, conc: int) -> dict[str, Any] | None:
    row: dict[str, Any]
    for row in results.get("accuracy", []):
        if row["proxy"] == name and row["connections"] == conc:
            return row["result"]
    return None


def _target(text: str, value: str, met: bool | None) -> dict[str, Any]:
    return {"target": text, "value": value, "met": met}


def _errors(r: dict[str, Any], who: str = "") -> str:
    """``"; N errors"`` for a run that had failed answers (a verdict needs a clean run:
    wrk leaves timed-out requests out of its percentiles), else nothing."""
    return f"; {who}{r['errors']} errors" if r["errors"] else ""


def _accuracy(results: dict[str, Any], proxy: str, label: str) -> list[dict[str, Any]]:
    """The two injection-accuracy targets for ``proxy``; ``label`` names it in the text."""
    out: list[dict[str, Any]] = []
    a32 = _acc(results, proxy, 32)
    text = f"100 ms injected at c=32{label}: p50 in 100-105 ms, p99 <= 115 ms"
    if a32:
        met = 100 <= a32["p50_ms"] <= 105 and a32["p99_ms"] <= 115 and a32["errors"] == 0
        value = f"p50 {a32['p50_ms']:.1f} / p99 {a32['p99_ms']:.1f} ms" + _errors(a32)
        out.append(_target(text, value, met))
    else:
        out.append(_target(text, "not measured", None))
    a100 = _acc(results, proxy, 100)
    t100 = next(
        (
            row["result"]
            for row in results.get("accuracy", [])
            if row["proxy"].startswith("toxy") and row["connections"] == 100
        ),
        None,
    )
    text = f"100 ms injected at c=100{label}: p50 and p99 better than toxy's"
    if a100 and t100:
        met = (
            a100["p50_ms"] < t100["p50_ms"]
            and a100["p99_ms"] < t100["p99_ms"]
            and a100["errors"] == t100["errors"] == 0
        )
        value = (
            f"p50 {a100['p50_ms']:.1f} vs {t100['p50_ms']:.1f}, "
            f"p99 {a100['p99_ms']:.1f} vs {t100['p99_ms']:.1f} ms"
            + _errors(a100)
            + _errors(t100, "toxy: ")
        )
        out.append(_target(text, value, met))
    else:
        value = "not measured: toxy (run with --peers)" if a100 else "not measured"
        out.append(_target(text, value, None))
    return out


def _state_target(results: dict[str, Any]) -> dict[str, Any]:
    """Passthrough costs the same with --state redis:// (Redis is never asked): CPU per
    request within 15% (what two runs of the same proxy differ by on a shared machine)."""
    text = "passthrough CPU per request with --state redis within 15% of in memory"
    rows = {row["proxy"]: row["c32"] for row in results.get("state", [])}
    mem, shared = rows.get("passthrough-20, in memory"), rows.get("passthrough-20, --state redis")
    if not mem or not shared or not mem.get("cpu_us_per_request"):
        return _target(text, "not measured", None)
    a, b = mem["cpu_us_per_request"], shared.get("cpu_us_per_request", 0)
    clean = mem["errors"] == shared["errors"] == 0
    value = f"{b / 1000:.2f} vs {a / 1000:.2f} ms ({b / a - 1:+.0%}; {shared['rps']:.0f} vs "
    value += f"{mem['rps']:.0f} req/s)" + _errors(shared)
    return _target(text, value, abs(b / a - 1) <= 0.15 and clean)


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 7: met (True), not met (False) or not measured (None)."""
    out: list[dict[str, Any]] = []
    ours = _tput(results, "chaosproxy", "c32")
    mitm = _tput(results, "mitmdump", "c32")
    if ours and mitm:
        ratio = ours["rps"] / mitm["rps"] if mitm["rps"] else math.inf
        clean = ours["errors"] == 0
        value = f"{ratio:.2f}x ({ours['rps']:.0f} vs {mitm['rps']:.0f} req/s"
        value += ", no errors)" if clean else f", {ours['errors']} errors)"
        out.append(_target("c=32 throughput >= 1.4x plain mitmdump", value, ratio >= 1.4 and clean))
    else:
        out.append(_target("c=32 throughput >= 1.4x plain mitmdump", "not measured", None))
    workers = next(
        (row for row in results.get("throughput", []) if row["proxy"] == "chaosproxy --workers 2"),
        None,
    )
    toxies = [
        row
        for row in results.get("throughput", [])
        if row["proxy"].startswith("toxy") and row.get("c32")
    ]
    toxy = max(toxies, key=lambda row: row["c32"]["rps"]) if toxies else None
    text = "c=32 throughput with --workers 2 >= toxy"
    if workers and toxy and workers.get("c32"):
        w, t = workers["c32"], toxy["c32"]
        met = w["rps"] >= t["rps"] and w["errors"] == t["errors"] == 0
        value = f"{w['rps']:.0f} vs {t['rps']:.0f} req/s, {toxy['proxy']}"
        value += ", the faster toxy" if len(toxies) > 1 else ""
        value += _errors(w) + _errors(t, "toxy: ")
        out.append(_target(text, value, met))
    else:
        missing = "--workers" if not workers else "toxy (run with --peers)"
        out.append(_target(text, f"not measured: {missing}", None))
    ours1 = _tput(results, "chaosproxy", "c1")
    mitm1 = _tput(results, "mitmdump", "c1")
    text = "c=1 added latency p50 below plain mitmdump's"
    if ours1 and mitm1:
        value = f"{ours1['p50_ms']:.2f} ms vs {mitm1['p50_ms']:.2f} ms"
        out.append(_target(text, value, ours1["p50_ms"] < mitm1["p50_ms"]))
    else:
        out.append(_target(text, "not measured", None))
    out.append(_state_target(results))
    out.extend(_accuracy(results, "chaosproxy", ""))
    for name in sorted({row["proxy"] for row in results.get("accuracy", [])}):
        if name.startswith("chaosproxy --workers"):  # reported too, judged on its own
            out.extend(_accuracy(results, name, f" ({name.removeprefix('chaosproxy ')})"))
    held = results.get("held")
    text = f"{held['held'] if held else 1000} held connections: probe p50 within 2x of idle"
    if held:
        idle, busy = held["idle"]["p50_ms"], held["busy"]["p50_ms"]
        value = f"{busy:.2f} ms vs {idle:.2f} ms idle ({held['connected']} held)"
        met = busy <= 2 * idle and held["connected"] >= held["held"] and held["busy"]["errors"] == 0
        out.append(_target(text, value, met))
    else:
        out.append(_target(text, "not measured", None))
    rss = results.get("rss")
    text = f"RSS grows < 30 MB over {rss['requests'] if rss else 50000} requests"
    if rss:
        value = f"{rss['growth_mb']:+.1f} MB ({rss['before_mb']:.0f} -> {rss['after_mb']:.0f} MB)"
        value += _errors(rss)
        out.append(_target(text, value, rss["growth_mb"] < 30 and rss["errors"] == 0))
    else:
        out.append(_target(text, "not measured", None))
    start = results.get("startup", {}).get("chaosproxy")
    text = "start to first proxied request < 1.5 s"
    if start is not None:
        out.append(_target(text, f"{start:.2f} s", start < 1.5))
    else:
        out.append(_target(text, "not measured", None))
    out.append(_websocket_target(results))
    return out


def _websocket_target(results: dict[str, Any]) -> dict[str, Any]:
    rows = {row["proxy"]: row for row in results.get("websocket") or []}
    n = next(iter(rows.values()))["messages"] if rows else 10000
    text = f"WebSocket passthrough of {n:,} messages within 2x of mitmdump's time"
    ours, theirs = rows.get("chaosproxy"), rows.get("mitmdump")
    if not ours or not theirs:
        return _target(text, "not measured", None)
    ratio = ours["seconds"] / theirs["seconds"] if theirs["seconds"] else float("inf")
    value = f"{ours['seconds']:.2f} s vs {theirs['seconds']:.2f} s ({ratio:.2f}x)"
    value += _errors(ours) + _errors(theirs, "mitmdump")
    return _target(text, value, ratio <= 2 and ours["errors"] == 0 and theirs["errors"] == 0)


# --------------------------------------------------------------------------- markdown


def _fmt_rps(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    err = f", {r['errors']} errors" if r["errors"] else ""
    return f"{r['rps']:,.0f}{err}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"## chaosproxy benchmark, {results['date']}",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores), {m['os']}; Python {m['python']}, "
        f"mitmproxy {m['mitmproxy']}; load: {m['load_tool']}; upstream: {m['upstream']}; "
        f"{results['seconds_per_run']:g} s per run.",
        "",
    ]
    rounds = results.get("throughput_rounds", 1)
    if results.get("throughput") and rounds > 1:
        each = results.get("throughput_round_seconds", results["seconds_per_run"] / rounds)
        lines += [
            f"Throughput: {rounds} rounds of {each:g} s per load level, taking the proxies "
            "in turn (req/s over all rounds; p50 and p99 each the median of the rounds').",
            "",
        ]
    lines += [
        "| proxy | c=1 req/s (p50) | c=32 req/s (p50 / p99) | CPU per request (c=32) |",
        "|---|---|---|---|",
    ]
    for row in results.get("throughput", []):
        c1, c32 = row.get("c1"), row.get("c32")
        a = f"{_fmt_rps(c1)} ({c1['p50_ms']:.2f} ms)" if c1 else "-"
        b = f"{_fmt_rps(c32)} ({c32['p50_ms']:.2f} / {c32['p99_ms']:.2f} ms)" if c32 else "-"
        cpu = c32.get("cpu_us_per_request") if c32 else None
        c = f"{cpu / 1000:.2f} ms" if cpu else "-"
        lines.append(f"| {row['proxy']} | {a} | {b} | {c} |")
    if results.get("state"):
        lines += [
            "",
            "Shared state (`--state redis://`, a local redis-server) against in memory, c=32: "
            "decide-all (every request matches a rule, so each is decided: in Redis with "
            "--state) and passthrough-20 (no rule matches: Redis is never asked):",
            "",
            "| proxy | decisions or requests/s (p50 / p99) | CPU per request | decided alone |",
            "|---|---|---|---|",
        ]
        for row in results["state"]:
            r = row["c32"]
            cpu = r.get("cpu_us_per_request")
            alone = row.get("fallbacks")
            lines.append(
                f"| {row['proxy']} | {_fmt_rps(r)} ({r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms) | "
                f"{f'{cpu / 1000:.2f} ms' if cpu else '-'} | "
                f"{'-' if alone is None else f'{alone:,.0f}'} |"
            )
    if results.get("accuracy"):
        lines += ["", "Latency injection, 100 ms asked:", ""]
        lines += ["| proxy | connections | p50 | p90 | p99 | req/s | errors |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for row in results["accuracy"]:
            r = row["result"]
            lines.append(
                f"| {row['proxy']} | {row['connections']} | {r['p50_ms']:.1f} ms | "
                f"{r['p90_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['rps']:,.0f} | {r['errors']} |"
            )
    held = results.get("held")
    if held:
        lines += [
            "",
            f"Held connections: {held['connected']} requests held by a `timeout` rule; "
            f"passthrough probe (c=1) p50 {held['busy']['p50_ms']:.2f} ms, p99 "
            f"{held['busy']['p99_ms']:.2f} ms (idle: p50 {held['idle']['p50_ms']:.2f} ms, "
            f"p99 {held['idle']['p99_ms']:.2f} ms).",
        ]
    rss = results.get("rss")
    if rss:
        lines += [
            "",
            f"Memory: RSS {rss['before_mb']:.1f} MB after warm-up, {rss['after_mb']:.1f} MB "
            f"after {rss['requests']:,} more requests ({rss['growth_mb']:+.1f} MB).",
        ]
    startup = results.get("startup")
    if startup:
        parts = [f"{name} {sec:.2f} s" for name, sec in startup.items()]
        lines += ["", "Start to first proxied request (median of 3): " + ", ".join(parts) + "."]
    if results.get("websocket"):
        n = results["websocket"][0]["messages"]
        lines += [
            "",
            f"WebSocket: {n:,} messages echoed through one socket, pipelined "
            "(median round; CPU per message relayed, both directions):",
            "",
        ]
        lines += ["| proxy | seconds (rounds) | CPU per message | errors |", "|---|---|---|---|"]
        for row in results["websocket"]:
            rounds = ", ".join(f"{s:.2f}" for s in row["rounds_seconds"])
            cpu = row.get("cpu_us_per_message")
            c = f"{cpu:.0f} µs" if cpu else "-"
            lines.append(
                f"| {row['proxy']} | {row['seconds']:.2f} s ({rounds}) | {c} | {row['errors']} |"
            )
    lines += ["", "| target (issue 7) | measured | |", "|---|---|---|"]
    for t in results.get("targets", []):
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {mark} |")
    if results.get("notes"):
        lines += ["", *[f"- {note}" for note in results["notes"]]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- chart


def chart(results: dict[str, Any], path: Path) -> bool:
    """Throughput and latency per proxy as a PNG; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in results.get("throughput", []) if r.get("c32")]
    names = [r["proxy"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    ax = axes[0]
    ax.barh(names, [r["c32"]["rps"] for r in rows], color="#4c72b0", label="c=32")
    ax.barh(
        names, [r["c1"]["rps"] if r.get("c1") else 0 for r in rows], color="#dd8452", label="c=1"
    )
    ax.set_xscale("log")
    ax.set_xlabel("requests/s (log scale)")
    ax.set_title("Passthrough throughput")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax = axes[1]
    ax.barh(names, [r["c32"]["p99_ms"] for r in rows], color="#c44e52", label="c=32 p99")
    ax.barh(names, [r["c32"]["p50_ms"] for r in rows], color="#55a868", label="c=32 p50")
    ax.set_xscale("log")
    ax.set_xlabel("latency ms (log scale)")
    ax.set_title("Passthrough latency")
    ax.set_yticklabels([])
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax = axes[2]
    acc = results.get("accuracy", [])
    proxies = list(dict.fromkeys(row["proxy"] for row in acc))
    concs = sorted({row["connections"] for row in acc})
    width = 0.8 / max(1, len(proxies))
    for i, proxy in enumerate(proxies):
        xs, p50, p99 = [], [], []
        for j, c in enumerate(concs):
            r = _acc(results, proxy, c)
            if r:
                xs.append(j + i * width)
                p50.append(r["p50_ms"])
                p99.append(r["p99_ms"] - r["p50_ms"])
        ax.bar(xs, p50, width, label=f"{proxy} p50")
        ax.bar(xs, p99, width, bottom=p50, alpha=0.35)
    ax.axhline(100, color="black", lw=0.8, ls="--")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(concs))], [f"c={c}" for c in concs])
    ax.set_ylabel("latency ms (bar: p50, shaded to p99)")
    ax.set_title("100 ms injected")
    if proxies:
        ax.legend(fontsize=7)
    m = results["machine"]
    fig.suptitle(
        f"chaosproxy benchmark {results['date']} - {m['cpu']} ({m['cores']} cores), "
        f"mitmproxy {m['mitmproxy']}, {m['load_tool']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
