"""``--expect policy.yaml``: the policy a client must have, checked against an assessment.

    attempts: 2..4            # a number, a range A..B, or "<= N", "< N", ">= N", "> N"
    timeout_s: "<= 3"
    backoff: exponential      # a kind, or {kind, jitter, base_s, multiplier, cap_s}
    retry_after: honoured     # honoured, ignored or capped
    breaker: required         # required, forbidden, or {opens_after, reset_s, half_open_probes}
    retries_4xx: false        # and retries_on_reset, retries_non_idempotent,
                              # idempotency_key, fallback, malformed_is_failure

:func:`load` reads a file (located errors: ``policy.yaml:3:12: attempts: ...``);
:func:`check` lists each miss, explained.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaosproxy.core import yamlsource
from chaosproxy.core.yamlsource import Problem
from chaosproxy.testing.assess.model import BACKOFF_KINDS, Assessment, Evidence

NUMBERS = ("attempts", "timeout_s", "connect_timeout_s", "app_latency_budget_s")
FLAGS = (
    "retries_4xx",
    "retries_on_reset",
    "retries_non_idempotent",
    "idempotency_key",
    "fallback",
    "malformed_is_failure",
)
KNOWN = (*NUMBERS, *FLAGS, "backoff", "retry_after", "breaker")
BACKOFF_KEYS = ("kind", "jitter", "base_s", "multiplier", "cap_s")
BREAKER_KEYS = ("opens_after", "reset_s", "half_open_probes")
RETRY_AFTER = ("honoured", "ignored", "capped")
BREAKER_WORDS = ("required", "forbidden")

_RANGE = re.compile(r"^\s*(-?[0-9.]+)\s*\.\.\s*(-?[0-9.]+)\s*$")
_COMPARE = re.compile(r"^\s*(<=|>=|<|>|==)\s*(-?[0-9.]+)\s*$")


class PolicyError(Exception):
    """A policy file that cannot be used; ``lines`` are its located problems."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Bound:
    """A number's allowed range, as written (``2..4``, ``<= 3``, ``3``)."""

    text: str
    low: float | None
    high: float | None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )


def parse_bound(value: Any) -> Bound:
    """``3``, ``2..4``, ``"<= 3"``: a Bound (raises ValueError saying what is accepted)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f'{value!r} is not a number or a range (write 3, 2..4 or "<= 3")')
    if isinstance(value, int | float):
        return Bound(str(value), float(value), float(value))
    text = str(value)
    if m := _RANGE.match(text):
        low, high = float(m[1]), float(m[2])
        if low > high:
            raise ValueError(f"{text!r}: the range is empty ({m[1]} > {m[2]})")
        return Bound(text, low, high)
    if m := _COMPARE.match(text):
        op, n = m[1], float(m[2])
        return {
            "<=": Bound(text, None, n),
            "<": Bound(text, None, n, high_open=True),
            ">=": Bound(text, n, None),
            ">": Bound(text, n, None, low_open=True),
            "==": Bound(text, n, n),
        }[op]
    try:
        n = float(text)
    except ValueError:
        raise ValueError(
            f'{text!r} is not a number or a range (write 3, 2..4, "<= 3" or ">= 1")'
        ) from None
    return Bound(text, n, n)


@dataclass(frozen=True)
class Rule:
    """One expectation: ``item`` (a dotted policy path) and how to check it."""

    item: str
    wanted: str
    check: Callable[[Assessment], tuple[bool, str]]


@dataclass
class Policy:
    """The expectations of a policy file."""

    rules: list[Rule]
    source: str = "<policy>"


def _value(a: Assessment, path: str) -> Any:
    node: Any = a.policy
    for part in path.split("."):
        node = getattr(node, part, None) if node is not None else None
    return node


def _seen(a: Assessment, item: str) -> str:
    ev: Evidence | None = a.evidence.get(item.split(".")[0])
    if ev is None:
        return ""
    why = f" ({ev.note})" if ev.note else ""
    return f"; {ev.samples} sample(s), {ev.confidence} confidence{why}"


def _number_rule(path: str, bound: Bound) -> Rule:
    def check(a: Assessment) -> tuple[bool, str]:
        value = _value(a, path)
        if value is None:
            return False, f"{path}: expected {bound.text}, but none was seen{_seen(a, path)}"
        ok = bound.holds(float(value))
        return ok, f"{path}: expected {bound.text}, got {value:g}{_seen(a, path)}"

    return Rule(path, bound.text, check)


def _equal_rule(path: str, wanted: Any) -> Rule:
    def check(a: Assessment) -> tuple[bool, str]:
        value = _value(a, path)
        shown = "not observed" if value is None else _show(value)
        return value == wanted, f"{path}: expected {_show(wanted)}, got {shown}{_seen(a, path)}"

    return Rule(path, _show(wanted), check)


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _retry_after_rule(word: str) -> Rule:
    def check(a: Assessment) -> tuple[bool, str]:
        ra = a.policy.retry_after
        if ra is None or ra.honoured is None:
            got = "not observed"
        elif not ra.honoured:
            got = "ignored"
        elif ra.cap_s is not None:
            got = f"capped at {ra.cap_s:g}s"
        else:
            got = "honoured"
        ok = got.split(" ")[0] == word or (word == "honoured" and got.startswith("capped"))
        return ok, f"retry_after: expected {word}, got {got}{_seen(a, 'retry_after')}"

    return Rule("retry_after", word, check)


def _breaker_rule(required: bool) -> Rule:
    def check(a: Assessment) -> tuple[bool, str]:
        seen = a.policy.breaker is not None
        probed = a.experiment("breaker") is not None
        if not probed:
            return False, "breaker: not probed (--quick skips the breaker)"
        got = "a breaker" if seen else "no breaker"
        want = "a breaker" if required else "no breaker"
        return seen == required, f"breaker: expected {want}, got {got}{_seen(a, 'breaker')}"

    return Rule("breaker", "required" if required else "forbidden", check)


class _Reader:
    def __init__(self, doc: yamlsource.Document, source: str) -> None:
        self.doc = doc
        self.source = source
        self.problems: list[str] = []
        self.rules: list[Rule] = []

    def problem(self, path: tuple[str | int, ...], message: str, key: bool = False) -> None:
        pos = self.doc.position(path, key=key)
        line, col = pos if pos else (None, None)
        field = yamlsource.format_path(path) if path else "(top)"
        self.problems.append(Problem(field, message, line, col).format(self.source))

    def unknown(self, path: tuple[str | int, ...], key: str, valid: tuple[str, ...]) -> None:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.problem(
            (*path, key), f"unknown key {key!r}{hint}; valid keys: {', '.join(valid)}", key=True
        )

    def bound(self, path: tuple[str, ...], value: Any) -> None:
        try:
            self.rules.append(_number_rule(".".join(path), parse_bound(value)))
        except ValueError as exc:
            self.problem(path, str(exc))

    def flag(self, path: tuple[str, ...], value: Any) -> None:
        if not isinstance(value, bool):
            self.problem(path, f"{value!r} is not true or false")
        else:
            self.rules.append(_equal_rule(".".join(path), value))

    def read(self) -> None:
        data = self.doc.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.problem((), "a policy file is a mapping of policy items (attempts: 2..4, ...)")
            return
        for key, value in data.items():
            path = (key,)
            if key == "connect_timeout_s":  # a gate on it could never pass
                self.problem(
                    path,
                    "not probed (the proxy accepts every connection, so a client's connect "
                    "timeout is never seen): leave it out",
                )
            elif key in NUMBERS:
                self.bound(path, value)
            elif key in FLAGS:
                self.flag(path, value)
            elif key == "retry_after":
                if value not in RETRY_AFTER:
                    self.problem(path, f"{value!r}: write one of {', '.join(RETRY_AFTER)}")
                else:
                    self.rules.append(_retry_after_rule(value))
            elif key == "breaker":
                self.breaker(value)
            elif key == "backoff":
                self.backoff(value)
            else:
                self.unknown((), key, KNOWN)

    def breaker(self, value: Any) -> None:
        if isinstance(value, str) and value in BREAKER_WORDS:
            self.rules.append(_breaker_rule(value == "required"))
            return
        if not isinstance(value, dict):
            self.problem(
                ("breaker",),
                f"{value!r}: write required, forbidden, or a mapping of {', '.join(BREAKER_KEYS)}",
            )
            return
        self.rules.append(_breaker_rule(True))
        for key, sub in value.items():
            if key in BREAKER_KEYS:
                self.bound(("breaker", key), sub)
            else:
                self.unknown(("breaker",), key, BREAKER_KEYS)

    def backoff(self, value: Any) -> None:
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict):
            self.problem(
                ("backoff",), f"{value!r}: write a kind or a mapping of {', '.join(BACKOFF_KEYS)}"
            )
            return
        for key, sub in value.items():
            path = ("backoff", key)
            if key == "kind":
                if sub not in BACKOFF_KINDS:
                    self.problem(path, f"{sub!r}: write one of {', '.join(BACKOFF_KINDS)}")
                else:
                    self.rules.append(_equal_rule("backoff.kind", sub))
            elif key == "jitter":
                self.flag(path, sub)
            elif key in BACKOFF_KEYS:
                self.bound(path, sub)
            else:
                self.unknown(("backoff",), key, BACKOFF_KEYS)


def parse(text: str, source: str = "<policy>") -> Policy:
    """A policy from YAML text (raises PolicyError with every located problem)."""
    try:
        doc = yamlsource.parse(text)
    except yamlsource.YamlSourceError as exc:
        raise PolicyError([p.format(source) for p in exc.problems]) from None
    reader = _Reader(doc, source)
    for _path, problem in doc.problems:
        reader.problems.append(problem.format(source))
    reader.read()
    if reader.problems:
        raise PolicyError(reader.problems)
    return Policy(reader.rules, source)


def load(path: str | os.PathLike[str]) -> Policy:
    """A policy file (raises PolicyError, located, when it is missing or wrong)."""
    try:
        text = yamlsource.read_text(path)
    except (OSError, yamlsource.FileRefused) as exc:
        raise PolicyError([f"{os.fspath(path)}: {exc}"]) from None
    return parse(text, os.fspath(path))


@dataclass(frozen=True)
class Verdict:
    """One expectation checked: ``item`` (a policy key, or dotted: ``backoff.jitter``)."""

    item: str
    ok: bool
    message: str


def verdicts(policy: Policy, assessment: Assessment) -> list[Verdict]:
    """Each expectation of ``policy``, met or not, with what was seen."""
    out = []
    for rule in policy.rules:
        ok, why = rule.check(assessment)
        out.append(Verdict(rule.item, ok, why.removeprefix(f"{rule.item}: ")))
    return out


def check(policy: Policy, assessment: Assessment) -> list[str]:
    """Each expectation the assessment misses, explained (empty: all met)."""
    return [f"{v.item}: {v.message}" for v in verdicts(policy, assessment) if not v.ok]
