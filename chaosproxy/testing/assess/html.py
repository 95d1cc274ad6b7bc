"""The HTML report of an assessment: one self-contained file, no script, no external file.

``write(assessment, path)`` writes a summary table of the inferred policy and, per
experiment, a timeline drawn as inline SVG: one row per sample, each upstream attempt a
bar on a time axis coloured by what the proxy did (passed through, error status, reset or
close, hang, malformed), the waits between attempts annotated, and a diamond where the
app (or the command) answered. Every mark has a ``<title>`` tooltip. The assessment's
JSON document is embedded too (``<script type="application/json" id="assessment">``), so
the file alone is the whole record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from chaosproxy.testing.assess.card import (
    ITEMS,
    Verdict,
    describe,
    describe_target,
    document,
    finding_text,
    outcome_word,
    seconds,
    shown_items,
    worth_showing,
)

#: attempt kinds: (css class, legend label)
KINDS: dict[str, str] = {
    "ok": "passed through (2xx/3xx)",
    "status5": "5xx or 429 injected",
    "status4": "4xx",
    "cut": "reset or closed",
    "hang": "hang (client gave up)",
    "malformed": "malformed body",
    "other": "other",
}

STYLE = """
:root { --ok: #2e7d32; --status5: #c62828; --status4: #ef6c00; --cut: #6a1b9a;
  --hang: #757575; --malformed: #8d6e63; --other: #1565c0; --ink: #212121; --muted: #616161;
  --line: #e0e0e0; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 1.5em; margin: 0 0 4px; }
h2 { font-size: 1.15em; margin: 28px 0 6px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
h2 small, .meta { color: var(--muted); font-weight: normal; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
table.findings { width: auto; min-width: 40%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.conf-high { color: var(--ok); } .conf-medium { color: #b26a00; }
.conf-low { color: var(--status5); }
.miss { color: var(--status5); font-weight: 600; } .met { color: var(--ok); }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 8px 0; font-size: 0.9em; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 12px;
  margin-right: 5px; vertical-align: -1px; border-radius: 2px; background: var(--c); }
svg.timeline { width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: var(--ink); }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .gap { stroke: var(--muted); stroke-width: 1; stroke-dasharray: 2 2; }
svg .gap-label { fill: var(--muted); font-size: 10px; }
svg .mark { stroke: var(--ok); stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .mark-label { fill: var(--ok); font-size: 10px; }
svg .answer-good { fill: var(--ok); } svg .answer-bad { fill: var(--status5); }
svg .answer-none { fill: var(--hang); }
""" + "".join(f"svg .k-{k} {{ fill: var(--{k}); }}\n" for k in KINDS)

WIDTH = 1000
LEFT = 80
RIGHT = 60
ROW = 40
TOP = 14
AXIS = 30


def attempt_kind(attempt: Mapping[str, Any]) -> str:
    """What happened to one attempt, as one of :data:`KINDS`."""
    fault = str(attempt.get("fault") or "")
    outcome = str(attempt.get("outcome") or "")
    status = attempt.get("status")
    if "malformed" in fault:
        return "malformed"
    if "timeout" in fault or outcome in ("client_disconnected", "timeout", "hang"):
        return "hang"
    if "abort" in fault or outcome in ("reset", "closed", "close", "killed"):
        return "cut"
    if isinstance(status, int):
        if status >= 500 or status == 429:
            return "status5"
        if status >= 400:
            return "status4"
        return "ok"
    return "other"


def nice_step(span: float, ticks: int = 8) -> float:
    """A 1, 2 or 5 times a power of ten step giving about ``ticks`` ticks over ``span``."""
    raw = max(span, 1e-3) / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power  # pragma: no cover - the loop always returns


def _num(value: float) -> str:
    return f"{value:.1f}"


@dataclass
class Row:
    """One line of a timeline: attempts and the app's answers on one time axis."""

    label: str
    attempts: list[Mapping[str, Any]]
    offset: float = 0.0
    """Added to the attempts' ``t_s`` (a sample's start, on the experiment's axis)."""
    answers: list[tuple[float, Mapping[str, Any]]] = field(default_factory=list)
    """(when, outcome) of each answer of the app in this row."""
    label_answers: bool = True


def is_one_story(experiment: Mapping[str, Any]) -> bool:
    """The breaker's experiment: its samples are one story (fail, wait for the probe,
    heal), drawn on one axis from the experiment's start rather than one row each."""
    samples = experiment.get("samples") or []
    placed = all(s.get("started_s") is not None for s in samples)
    findings = experiment.get("findings") or {}
    return placed and (experiment.get("name") == "breaker" or "healed_at_s" in findings)


def rows_of(experiment: Mapping[str, Any]) -> tuple[list[Row], list[tuple[float, str]]]:
    """The rows of an experiment's timeline, and the marks across them (time, label)."""
    samples: Sequence[Mapping[str, Any]] = experiment.get("samples") or []
    if not is_one_story(experiment):
        rows = [
            Row(
                f"sample {s.get('index', n)}",
                list(s.get("attempts") or []),
                answers=[
                    (
                        float((s.get("outcome") or {}).get("duration_s") or 0.0),
                        s.get("outcome") or {},
                    )
                ],
            )
            for n, s in enumerate(samples)
        ]
        return rows, []
    attempts: list[Mapping[str, Any]] = []
    answers = []
    for s in samples:
        began = float(s["started_s"])
        attempts += [
            {**a, "t_s": began + float(a.get("t_s") or 0.0)} for a in s.get("attempts") or []
        ]
        outcome = s.get("outcome") or {}
        answers.append((began + float(outcome.get("duration_s") or 0.0), outcome))
    marks = []
    healed = (experiment.get("findings") or {}).get("healed_at_s")
    if isinstance(healed, int | float):
        marks.append((float(healed), "upstream healed"))
    return [Row("all calls", attempts, answers=answers, label_answers=False)], marks


def timeline(experiment: Mapping[str, Any]) -> str:
    """The SVG timeline of one experiment's samples."""
    rows, marks = rows_of(experiment)
    if not rows:
        return '<p class="meta">no samples recorded</p>'
    end = max([t for t, _ in marks] or [0.0])
    for r in rows:
        end = max([end, *(t for t, _ in r.answers)])
        for a in r.attempts:
            end = max(
                end, r.offset + float(a.get("t_s") or 0.0) + float(a.get("duration_s") or 0.0)
            )
    step = nice_step(end or 0.1)
    span = step * max(1, math.ceil((end or 0.1) / step))
    plot = WIDTH - LEFT - RIGHT
    height = TOP + ROW * len(rows) + AXIS

    def x(t: float) -> float:
        return LEFT + plot * (t / span)

    name = escape(str(experiment.get("name", "")))
    out = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="timeline of {name}" '
        f'data-experiment="{name}">'
    ]
    axis_y = TOP + ROW * len(rows)
    for i in range(round(span / step) + 1):
        t = i * step
        out.append(
            f'<line class="grid" x1="{_num(x(t))}" y1="{TOP - 4}" x2="{_num(x(t))}" '
            f'y2="{axis_y}"/>'
            f'<text x="{_num(x(t))}" y="{axis_y + 16}" text-anchor="middle">{t:g}</text>'
        )
    out.append(f'<line class="axis" x1="{LEFT}" y1="{axis_y}" x2="{LEFT + plot}" y2="{axis_y}"/>')
    out.append(f'<text x="{LEFT - 8}" y="{axis_y + 16}" text-anchor="end">seconds</text>')
    for t, label in marks:
        out.append(
            f'<line class="mark" x1="{_num(x(t))}" y1="{TOP - 8}" x2="{_num(x(t))}" '
            f'y2="{axis_y}"><title>{escape(label)} at {seconds(t)}</title></line>'
            f'<text class="mark-label" x="{_num(x(t) + 4)}" y="{TOP + 2}">{escape(label)}</text>'
        )
    for number, row in enumerate(rows):
        out += _row(row, TOP + number * ROW + ROW / 2 - 4, x)
    out.append("</svg>")
    return "".join(out)


def _row(row: Row, mid: float, x: Callable[[float], float]) -> list[str]:
    """The marks of one row: its label, attempts, the waits between them, the answers."""
    out = [f'<text x="{LEFT - 8}" y="{_num(mid + 4)}" text-anchor="end">{escape(row.label)}</text>']
    attempts = sorted(row.attempts, key=lambda a: float(a.get("t_s") or 0))
    previous_end: float | None = None
    for n, a in enumerate(attempts, 1):
        start = row.offset + float(a.get("t_s") or 0.0)
        duration = float(a.get("duration_s") or 0.0)
        if previous_end is not None and start > previous_end:
            gap = start - previous_end
            x1, x2 = x(previous_end), x(start)
            out.append(
                f'<line class="gap" x1="{_num(x1)}" y1="{_num(mid)}" x2="{_num(x2)}" '
                f'y2="{_num(mid)}"><title>waited {seconds(gap)} before attempt {n}'
                "</title></line>"
            )
            if x2 - x1 >= 34:
                out.append(
                    f'<text class="gap-label" x="{_num((x1 + x2) / 2)}" '
                    f'y="{_num(mid - 5)}" text-anchor="middle">{escape(seconds(gap))}</text>'
                )
        kind = attempt_kind(a)
        width = max(x(start + duration) - x(start), 3.0)
        what = a.get("fault") or "passed through"
        status = a.get("status")
        tip = (
            f"attempt {n}: {a.get('method', '')} {a.get('path', '')} at {seconds(start)}, "
            f"{what}, {status if status is not None else 'no status'}, {seconds(duration)}"
        )
        if a.get("idempotency_key"):
            tip += f", Idempotency-Key {a['idempotency_key']}"
        out.append(
            f'<rect class="attempt k-{kind}" x="{_num(x(start))}" y="{_num(mid - 6)}" '
            f'width="{_num(width)}" height="12" rx="2"><title>{escape(tip)}</title></rect>'
        )
        previous_end = start + duration
    for answered, outcome in row.answers:
        word = outcome_word(outcome)
        status = outcome.get("status")
        exit_code = outcome.get("exit_code")
        if (isinstance(status, int) and status < 400) or exit_code == 0:
            css = "answer-good"
        elif status is None and exit_code is None:
            css = "answer-none"
        else:
            css = "answer-bad"
        ax, ay = x(answered), mid + 13
        tip = f"the app answered {word} at {seconds(answered)}"
        if outcome.get("error"):
            tip += f" ({outcome['error']})"
        out.append(
            f'<path class="answer {css}" d="M{_num(ax)} {_num(ay - 5)} l5 5 l-5 5 l-5 -5 z">'
            f"<title>{escape(tip)}</title></path>"
        )
        if row.label_answers:
            out.append(f'<text x="{_num(ax + 7)}" y="{_num(ay + 4)}">{escape(word)}</text>')
    return out


def _summary(doc: Mapping[str, Any], verdicts: Sequence[Verdict] | None) -> str:
    policy: Mapping[str, Any] = doc.get("policy") or {}
    evidence: Mapping[str, Any] = doc.get("evidence") or {}
    by_item: dict[str, list[Verdict]] = {}
    for v in verdicts or ():
        by_item.setdefault(v.item.split(".")[0], []).append(v)
    head = "<tr><th>item</th><th>inferred</th><th>confidence</th><th>samples</th>"
    head += "<th>from</th><th>note</th>" + ("<th>expect</th>" if verdicts is not None else "")
    rows = [head + "</tr>"]
    ran = {e.get("name") for e in doc.get("experiments") or []}
    for name in shown_items(policy):
        proof = evidence.get(name) or {}
        conf = proof.get("confidence") or "-"
        links = ", ".join(
            f'<a href="#exp-{escape(e)}">{escape(e)}</a>' if e in ran else escape(e)
            for e in proof.get("experiments") or []
        )
        cells = [
            escape(ITEMS.get(name, name)),
            escape(describe(name, policy[name], doc)),
            f'<span class="conf-{escape(conf)}">{escape(conf)}</span>',
            escape(str(proof.get("samples", "-"))),
            links or "-",
            escape(str(proof.get("note") or "")),
        ]
        if verdicts is not None:
            mine = by_item.get(name, [])
            if not mine:
                cells.append("")
            elif all(v.ok for v in mine):
                cells.append('<span class="met">ok</span>')
            else:
                cells.append(
                    '<span class="miss">MISS: '
                    + escape("; ".join(v.message for v in mine if not v.ok))
                    + "</span>"
                )
        cls = [""] * len(cells)
        cls[3] = ' class="num"'
        rows.append("<tr>" + "".join(f"<td{c}>{v}</td>" for c, v in zip(cls, cells, strict=True)))
    return '<table class="summary">' + "\n".join(rows) + "</table>"


def _experiment(experiment: Mapping[str, Any]) -> str:
    name = escape(str(experiment.get("name", "")))
    title = escape(str(experiment.get("title", "")))
    findings: Mapping[str, Any] = experiment.get("findings") or {}
    items = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(finding_text(k, v)[len(k) + 1 :])}</td></tr>"
        for k, v in findings.items()
        if worth_showing(v)
    )
    count = len(experiment.get("samples") or [])
    return (
        f'<section class="experiment" id="exp-{name}">'
        f"<h2>{title} <small>{name}, {count} sample{'s' if count != 1 else ''}</small></h2>"
        f"{timeline(experiment)}"
        + (f'<table class="findings">{items}</table>' if items else "")
        + "</section>"
    )


def render(assessment: Any, *, verdicts: Sequence[Verdict] | None = None) -> str:
    """The whole report as one HTML string."""
    doc = document(assessment)
    target = describe_target(doc.get("target") or {})
    tool = doc.get("tool") or {}
    mode = "quick" if doc.get("quick") else "full"
    legend = "".join(
        f'<span style="--c: var(--{k})">{escape(label)}</span>' for k, label in KINDS.items()
    )
    legend += (
        '<span style="--c: var(--ok)">&#9670; app answered (2xx/3xx or exit 0)</span>'
        '<span style="--c: var(--status5)">&#9670; app answered an error</span>'
    )
    verdict_line = ""
    if verdicts is not None:
        misses = [v for v in verdicts if not v.ok]
        verdict_line = (
            f'<p class="miss">{len(misses)} expectation(s) missed</p>'
            if misses
            else f'<p class="met">all {len(verdicts)} expectation(s) met</p>'
        )
    # "<", ">" and "&" only occur inside JSON strings: as escapes they cannot end the element
    embedded = (
        json.dumps(doc, indent=1)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # no icon to fetch: served over HTTP (the demo's dashboard), a browser asks for one
        '<link rel="icon" href="data:,">'
        f"<title>chaosproxy assess: {escape(target)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f'<h1>chaosproxy assess</h1><p class="meta">{escape(target)}<br>'
        f"{mode} battery, seed {escape(str(doc.get('seed')))}, "
        f"{escape(seconds(doc.get('duration_s')))}, started {escape(str(doc.get('started_at')))}, "
        f"{escape(str(tool.get('name', 'chaosproxy')))} {escape(str(tool.get('version', '')))}</p>"
        f"<h2>Policy</h2>{verdict_line}{_summary(doc, verdicts)}"
        f'<h2>Experiments</h2><div class="legend">{legend}</div>'
        + "".join(_experiment(e) for e in doc.get("experiments") or [])
        + f'<script type="application/json" id="assessment">{embedded}</script>'
        "</body></html>\n"
    )


def write(assessment: Any, path: str | Path, *, verdicts: Sequence[Verdict] | None = None) -> Path:
    """Write the report of ``assessment`` to ``path`` (UTF-8); returns the path."""
    target = Path(path)
    target.write_text(render(assessment, verdicts=verdicts), encoding="utf-8")
    return target
