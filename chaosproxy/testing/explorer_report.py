"""The exploration's report: per explored test, a table of calls x faults, each failure
with its first line and replay command; totals; the same as JSON (``--chaos-explore-json``).

Built from the plain result entries the explorer notes per run (gathered from xdist
workers too), so the controller of an xdist session renders it without collecting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: a table cell per status
CELLS = {"passed": "pass", "failed": "FAIL", "skipped": "skip"}


def explored_tests(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One document per explored test, in run order: calls, faults, runs, counts."""
    tests: dict[str, dict[str, Any]] = {}
    for entry in sorted(results, key=lambda e: e["order"]):
        test = tests.setdefault(
            entry["test"],
            {
                "test": entry["test"],
                "calls": [],
                "faults": [],
                "baseline": None,
                "runs": [],
                "pairs": [],
                "over_budget": 0,
                "recording_failed": [],
            },
        )
        if entry["kind"] == "baseline":
            test["baseline"] = entry["status"]
            test["calls"] = list(entry.get("recorded", []))
            test["faults"] = list(entry.get("menu", []))
            test["over_budget"] = entry.get("over_budget", 0)
            test["recording_failed"] = entry.get("recording_failed", [])
            continue
        for name in entry["calls"]:
            if name not in test["calls"]:
                test["calls"].append(name)
        if entry["fault"] not in test["faults"]:
            test["faults"].append(entry["fault"])
        test["runs" if entry["kind"] == "single" else "pairs"].append(_run(entry))
    for test in tests.values():
        runs = test["runs"] + test["pairs"]
        test["counts"] = {
            "runs": len(runs),
            **{s: sum(1 for r in runs if r["status"] == s) for s in CELLS},
            "repeats": sum(1 for r in runs if r["status"] == "skipped" and "repeat" in r["reason"]),
        }
    return list(tests.values())


def _run(entry: dict[str, Any]) -> dict[str, Any]:
    run = {
        "calls": entry["calls"],
        "fault": entry["fault"],
        "status": entry["status"],
        "reached": entry.get("reached", []),
        "replay": entry.get("replay"),
        "token": entry.get("token"),
    }
    if entry["status"] == "skipped":
        run["reason"] = entry["message"]
    elif entry["status"] == "failed":
        run["message"] = entry["message"]
    else:
        run["reason"] = ""
    run.setdefault("reason", "")
    return run


def totals(tests: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("runs", "passed", "failed", "skipped", "repeats")
    out = {k: sum(t["counts"][k] for t in tests) for k in keys}
    out["over_budget"] = sum(t["over_budget"] for t in tests)
    return out


def lines(results: list[dict[str, Any]]) -> list[str]:
    """The report as text lines."""
    tests = explored_tests(results)
    out: list[str] = []
    for test in tests:
        c = test["counts"]
        out.append(
            f"{test['test']}: {len(test['calls'])} calls x {len(test['faults'])} faults; "
            f"{c['runs']} runs: {c['passed']} passed, {c['failed']} failed, "
            f"{c['skipped']} skipped ({c['repeats']} repeats); "
            f"{test['over_budget']} left out by the budget"
        )
        if test["recording_failed"]:
            out.append("  the fault-free run failed, so nothing was explored: fix it first")
        elif test["baseline"] == "failed":
            out.append("  the fault-free run failed this time (it passed when recorded)")
        if test["runs"]:
            out += _table(test)
        for pair in test["pairs"]:
            text = f"{' + '.join(pair['calls'])} x {pair['fault']}: {CELLS[pair['status']]}"
            if pair["status"] == "passed" and len(pair["reached"]) < len(pair["calls"]):
                text += f" (reached only {', '.join(pair['reached']) or 'neither'})"
            out.append(f"  pair {text}" + (f" ({pair['reason']})" if pair["reason"] else ""))
        for run in test["runs"] + test["pairs"]:
            if run["status"] == "failed":
                out.append(f"  FAIL {' + '.join(run['calls'])} x {run['fault']}: {run['message']}")
                out.append(f"    replay: {run['replay']}")
    t = totals(tests)
    out.append(
        f"explored {len(tests)} test{'s' if len(tests) != 1 else ''}: {t['runs']} runs, "
        f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped "
        f"({t['repeats']} repeat an identity already explored), "
        f"{t['over_budget']} left out by the budget"
    )
    return out


def _table(test: dict[str, Any]) -> list[str]:
    cells = {(r["calls"][0], r["fault"]): CELLS[r["status"]] for r in test["runs"]}
    width = max(len("call"), *(len(c) for c in test["calls"]))
    cols = [max(4, len(f)) for f in test["faults"]]
    head = (
        "  "
        + "call".ljust(width)
        + "  "
        + "  ".join(f.ljust(w) for f, w in zip(test["faults"], cols, strict=True))
    )
    rows = [head.rstrip()]
    for call in test["calls"]:
        row = [
            cells.get((call, f), "-").ljust(w) for f, w in zip(test["faults"], cols, strict=True)
        ]
        rows.append(("  " + call.ljust(width) + "  " + "  ".join(row)).rstrip())
    return rows


def write_summary(terminalreporter: Any, results: list[dict[str, Any]]) -> None:
    terminalreporter.section("chaosproxy: exploration (calls x faults)")
    for line in lines(results):
        terminalreporter.write_line(line)


def write_json(results: list[dict[str, Any]], path: Path) -> None:
    tests = explored_tests(results)
    doc = {"version": 1, "tests": tests, "totals": totals(tests)}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
