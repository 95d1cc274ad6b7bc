"""The terminal report card of an assessment, and the live progress while it runs.

``render(assessment, console)`` prints the inferred policy (each item with the confidence
and samples it rests on), the verdicts of an ``--expect`` gate when given, and one line
per experiment. It reads the assessment's JSON document (schema_version 1), so any
experiment it does not know is still shown, from its samples and findings. Colour only
on a terminal: rich leaves it out when the console is not one (a pipe, a file, CI).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rich import box
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

#: the policy items in the order the card lists them, with their labels
ITEMS: dict[str, str] = {
    "timeout_s": "timeout",
    "connect_timeout_s": "connect timeout",
    "attempts": "attempts",
    "backoff": "backoff",
    "retry_after": "Retry-After",
    "retries_4xx": "retries 4xx",
    "retries_on_reset": "retries a reset",
    "retries_non_idempotent": "retries a POST",
    "idempotency_key": "Idempotency-Key",
    "breaker": "circuit breaker",
    "fallback": "fallback",
    "malformed_is_failure": "malformed body",
    "app_latency_budget_s": "app latency budget",
}
CONFIDENCE_STYLE = {"high": "green", "medium": "yellow", "low": "red"}


class ProgressEvent(Protocol):
    """What the runner reports as it goes (model.Progress)."""

    @property
    def experiment(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def sample(self) -> int: ...
    @property
    def samples(self) -> int: ...
    @property
    def done(self) -> bool: ...


class Verdict(Protocol):
    """One checked expectation of an ``--expect`` file: ``item`` is a policy key, or a
    dotted path into one (``backoff.jitter``), shown on that key's row."""

    @property
    def item(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def message(self) -> str: ...


def document(assessment: Any) -> dict[str, Any]:
    """The JSON document of ``assessment`` (an Assessment, or the document itself)."""
    if isinstance(assessment, Mapping):
        return dict(assessment)
    doc = assessment.to_json()
    if not isinstance(doc, Mapping):
        raise TypeError(f"to_json() gave {type(doc).__name__}, not the document's dict")
    return dict(doc)


# --------------------------------------------------------------------------- wording


def seconds(value: float | None) -> str:
    """``0.1 s``, ``2 s``, ``10.5 s``: three significant digits at most."""
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1000:.2g} ms"
    return f"{value:.3g} s"


def yes_no(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, "-") if isinstance(value, bool) else str(value)


def describe_backoff(backoff: Mapping[str, Any]) -> str:
    kind = backoff.get("kind") or "unknown"
    if kind == "none":
        return "none (retries at once)"
    parts = []
    if backoff.get("base_s") is not None:
        parts.append(f"base {seconds(backoff['base_s'])}")
    if backoff.get("increment_s") is not None and kind == "linear":
        parts.append(f"+{seconds(backoff['increment_s'])} each")
    elif backoff.get("multiplier") is not None and kind != "constant":
        parts.append(f"x{backoff['multiplier']:g}")
    if backoff.get("cap_s") is not None:
        parts.append(f"cap {seconds(backoff['cap_s'])}")
    parts.append("jitter" if backoff.get("jitter") else "no jitter")
    first = "first retry at once, then " if backoff.get("first_immediate") else ""
    return f"{first}{kind}: {', '.join(parts)}"


def describe(item: str, value: Any, doc: Mapping[str, Any]) -> str:
    """One policy item's value in words (null: not probed, or none seen, as it applies)."""
    proof = (doc.get("evidence") or {}).get(item) or {}
    probed = (proof.get("samples") or 0) > 0  # evidence of 0 samples: not probed
    if value is None:
        if item == "retries_non_idempotent":
            return "not probed (assess with --trigger-method POST)"
        if item == "breaker":
            if probed:
                return "none seen"
            return "not probed (--quick)" if doc.get("quick") else "not probed"
        if item == "timeout_s":
            return "none within the probe's cap" if probed else "not probed"
        if item == "retry_after":
            return "not observed"
        return "not observed" if probed else "not probed"
    if item in ("timeout_s", "connect_timeout_s", "app_latency_budget_s"):
        return seconds(value)
    if item == "backoff" and isinstance(value, Mapping):
        return describe_backoff(value)
    if item == "retry_after" and isinstance(value, Mapping):
        honoured = value.get("honoured")
        if honoured is None:
            return "not observed"
        if not honoured:
            return "ignored"
        cap = value.get("cap_s")
        return "honoured" + (f", capped at {seconds(cap)}" if cap is not None else "")
    if item == "breaker" and isinstance(value, Mapping):
        probes = value.get("half_open_probes")
        words = [f"opens after {value.get('opens_after')} failures"]
        if value.get("reset_s") is not None:
            words.append(f"reset {seconds(value['reset_s'])}")
        if probes is not None:
            words.append(f"{probes} half-open probe{'s' if probes != 1 else ''}")
        return ", ".join(words)
    if item == "malformed_is_failure" and isinstance(value, bool):
        return "a failure (retried or fallen back)" if value else "passed on as an answer"
    if item == "fallback" and isinstance(value, bool):
        return "yes (2xx while the upstream fails)" if value else "no"
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def describe_target(target: Mapping[str, Any]) -> str:
    if target.get("trigger") == "command" or target.get("command"):
        command = target.get("command")
        shown = " ".join(command) if isinstance(command, list) else str(command)
        where = f"command `{shown}`"
    else:
        where = f"{target.get('method') or 'GET'} {target.get('url')}"
    upstream = target.get("upstream")
    return where + (f" -> upstream {upstream}" if upstream else "")


def outcome_word(outcome: Mapping[str, Any]) -> str:
    if outcome.get("status") is not None:
        return str(outcome["status"])
    if outcome.get("exit_code") is not None:
        return f"exit {outcome['exit_code']}"
    return "no answer"


def counted_values(values: Iterable[str]) -> str:
    """``503 x3`` for repeats, in first-seen order: ``200, 503 x2``."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(v if n == 1 else f"{v} x{n}" for v, n in counts.items())


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ",".join(_short(v) for v in value)
    return str(value)


def finding_text(key: str, value: Any) -> str:
    """``gaps_s 0.12,0.22 | 0.15,0.28``: a finding in a few characters (lists of lists are
    one group per sample; at most six shown)."""
    if isinstance(value, list):
        groups = [_short(v) for v in value[:6]]
        more = f" +{len(value) - 6}" if len(value) > 6 else ""
        joiner = " | " if any(isinstance(v, list) for v in value) else ","
        return f"{key} {joiner.join(groups)}{more}"
    return f"{key} {_short(value)}"


def worth_showing(value: Any) -> bool:
    return value is not None and value != [] and value != {}


def experiment_summary(experiment: Mapping[str, Any]) -> str:
    """Attempts per sample, the app's answers and the findings, in one line."""
    samples = experiment.get("samples") or []
    parts = []
    if samples:
        attempts = [str(len(s.get("attempts") or [])) for s in samples]
        parts.append(f"attempts {','.join(attempts)}")
        parts.append("app " + counted_values(outcome_word(s.get("outcome") or {}) for s in samples))
    findings = experiment.get("findings") or {}
    parts += [
        finding_text(k, v) for k, v in findings.items() if k != "attempts" and worth_showing(v)
    ]
    return "; ".join(parts) or "no samples"


def shown_items(policy: Mapping[str, Any]) -> list[str]:
    """The policy keys a report lists, in order (unknown ones last); the connect timeout
    only when it differs from the timeout (it is null otherwise)."""
    names = [*ITEMS, *(k for k in policy if k not in ITEMS)]
    return [
        n for n in names if n in policy and not (n == "connect_timeout_s" and policy[n] is None)
    ]


# --------------------------------------------------------------------------- the card


def render(
    assessment: Any,
    console: Console,
    *,
    verdicts: Sequence[Verdict] | None = None,
) -> None:
    """Print the report card of ``assessment`` (and the ``--expect`` verdicts, if given)."""
    doc = document(assessment)
    evidence: Mapping[str, Any] = doc.get("evidence") or {}
    policy: Mapping[str, Any] = doc.get("policy") or {}
    tool = doc.get("tool") or {}
    mode = "quick" if doc.get("quick") else "full"
    header = Text("chaosproxy assess", style="bold")
    header.append(f"  {describe_target(doc.get('target') or {})}", style="")
    console.print(header)
    console.print(
        f"{mode} battery, seed {doc.get('seed')}, {seconds(doc.get('duration_s'))}, "
        f"started {doc.get('started_at')} ({tool.get('name', 'chaosproxy')} "
        f"{tool.get('version', '')})".rstrip(),
        highlight=False,
    )

    by_item: dict[str, list[Verdict]] = {}
    for verdict in verdicts or ():
        by_item.setdefault(verdict.item.split(".")[0], []).append(verdict)
    table = Table(box=box.SIMPLE_HEAD, title="Policy", title_justify="left", pad_edge=False)
    table.add_column("item")
    table.add_column("inferred")
    table.add_column("confidence")
    table.add_column("samples", justify="right")
    wide = console.width >= 120  # the experiments an item rests on, when there is room
    if wide:
        table.add_column("from")
    if verdicts is not None:
        table.add_column("expect")
    for name in shown_items(policy):
        proof = evidence.get(name) or {}
        confidence = proof.get("confidence")
        row: list[Text | str] = [
            ITEMS.get(name, name),
            describe(name, policy[name], doc),
            Text(confidence or "-", style=CONFIDENCE_STYLE.get(confidence or "", "")),
            str(proof["samples"]) if proof.get("samples") is not None else "-",
        ]
        if wide:
            row.append(", ".join(proof.get("experiments") or []) or "-")
        if verdicts is not None:
            mine = by_item.get(name, [])
            if not mine:
                row.append("")
            elif all(v.ok for v in mine):
                row.append(Text("ok", style="green"))
            else:
                row.append(Text("MISS", style="bold red"))
        table.add_row(*row)
    console.print(table)

    if verdicts is not None:
        misses = [v for v in verdicts if not v.ok]
        if misses:
            console.print(Text(f"{len(misses)} expectation(s) missed:", style="bold red"))
            for miss in misses:
                console.print(Text(f"  x {miss.item}: {miss.message}"), highlight=False)
        else:
            console.print(Text(f"all {len(verdicts)} expectation(s) met", style="bold green"))

    runs = Table(box=box.SIMPLE_HEAD, title="Experiments", title_justify="left", pad_edge=False)
    runs.add_column("experiment")
    runs.add_column("what")
    runs.add_column("samples", justify="right")
    runs.add_column("seen")
    for experiment in doc.get("experiments") or []:
        runs.add_row(
            experiment.get("name", "?"),
            experiment.get("title", ""),
            str(len(experiment.get("samples") or [])),
            experiment_summary(experiment),
        )
    console.print(runs)


# --------------------------------------------------------------------------- progress


class LiveProgress:
    """Progress as the assessment runs: a bar per experiment on a terminal, else one line
    when each experiment starts and when it ends. An event with ``samples`` 0 has no
    known total yet (the breaker's experiment calls until the breaker shows). Call
    ``close()`` (or use ``with``) when the assessment is over."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.live = console.is_terminal
        self._bar: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._started: dict[str, float] = {}
        self._finished: set[str] = set()

    def __call__(self, event: ProgressEvent) -> None:
        if self.live:
            self._update_bar(event)
        else:
            self._print_line(event)

    def _print_line(self, event: ProgressEvent) -> None:
        name = event.experiment
        if name not in self._started:
            self._started[name] = self.clock()
            plural = "s" if event.samples != 1 else ""
            count = f" ({event.samples} sample{plural})" if event.samples else ""
            self.console.print(f"- {name}: {event.title}{count}", highlight=False)
        if event.done and name not in self._finished:
            self._finished.add(name)
            took = self.clock() - self._started[name]
            self.console.print(
                f"  {name}: done, {event.sample}/{event.samples} in {took:.1f} s",
                highlight=False,
            )

    def _update_bar(self, event: ProgressEvent) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        if self._bar is None:
            self._bar = Progress(
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.start()
        # samples 0: a total not known in advance (the breaker's triggers)
        total = float(event.samples) if event.samples else None
        task = self._tasks.get(event.experiment)
        if task is None:
            task = self._bar.add_task(f"{event.experiment}: {event.title}", total=total)
            self._tasks[event.experiment] = task
        completed = event.samples if event.done else max(event.sample - 1, 0)
        self._bar.update(task, completed=completed, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def live_progress(console: Console) -> LiveProgress:
    """A progress callback for the runner's ``on_progress`` (close it when done)."""
    return LiveProgress(console)
