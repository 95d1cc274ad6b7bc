"""``re:`` patterns, matched in linear time by RE2 (as Envoy's ``safe_regex`` does).

Python's ``re`` backtracks: a pattern such as ``(a|aa){1,1000}$`` takes seconds on a
37-character path, and a request would stall every client of the proxy while it ran.
RE2 never backtracks, so matching time grows with the text only. In exchange it does not
support backreferences, lookaround, possessive repetitions, atomic groups or
conditionals; :func:`unsupported` names the construct so the loader can say which.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import re2

# Python's own regex parser (private, but in every CPython since 3.11 with this shape): it
# parses what RE2 refuses, so the loader can name the construct (RE2's error only says
# the pattern failed) and give Python's precise message for a syntax error. Imported by
# name so that type checkers do not need stubs for it.
_sre: Any = importlib.import_module("re._parser")
#: what ``_sre.parse`` raises for a pattern it cannot parse (a huge repetition count or
#: a very deep nesting overflow rather than raise ``re.error``)
_PARSE_ERRORS = (re.error, OverflowError, RecursionError)

#: What each construct RE2 refuses is called, by the sre opcode that parses it.
_REFUSED = {
    "ASSERT": "a lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...))",
    "ASSERT_NOT": "a lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...))",
    "GROUPREF": "a backreference (\\1, (?P=name))",
    "GROUPREF_EXISTS": "a conditional group ((?(1)...|...))",
    "POSSESSIVE_REPEAT": "a possessive repetition (*+, ++, ?+)",
    "ATOMIC_GROUP": "an atomic group ((?>...))",
}


class RegexError(ValueError):
    """The pattern cannot be used; the message says why, for a located error.

    ``invalid`` is True when it is not a regular expression at all (a syntax error)."""

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid


def _sub_items(op: str, av: Any) -> list[Any]:
    """The nested sub-patterns of one parsed item."""
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        return [av[2]]
    if op == "SUBPATTERN":
        return [av[3]]
    if op in ("ASSERT", "ASSERT_NOT"):
        return [av[1]]
    if op == "ATOMIC_GROUP":
        return [av]
    if op == "BRANCH":
        return list(av[1])
    if op == "GROUPREF_EXISTS":
        return [b for b in (av[1], av[2]) if b is not None]
    return []


def unsupported(pattern: str) -> str | None:
    """The first construct of ``pattern`` that RE2 does not support, or None."""
    try:
        tree = _sre.parse(pattern)
    except _PARSE_ERRORS:  # not Python syntax either; RE2's own error will do
        return None
    stack = [list(tree)]
    while stack:
        for op, av in stack.pop():
            name = str(op)
            if name in _REFUSED:
                return _REFUSED[name]
            stack.extend(list(sub) for sub in _sub_items(name, av))
    return None


def compile_re2(pattern: str, *, ignore_case: bool = False) -> Any:
    """Compile ``pattern`` with RE2; raise :class:`RegexError` saying why it cannot be."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # RE2 would print its own error on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error:
        pass
    construct = unsupported(pattern)
    if construct is not None:
        raise RegexError(
            f"uses {construct}, which RE2 does not support (re: patterns are matched by RE2, "
            "in linear time, so that no pattern can stall the proxy)"
        ) from None
    if "\\Z" in pattern:
        raise RegexError("\\Z is not RE2 syntax: write \\z (end of text) or $") from None
    try:
        _sre.parse(pattern)
    except _PARSE_ERRORS as exc:  # Python's message is more precise than RE2's (it has none)
        raise RegexError(str(exc), invalid=True) from None
    raise RegexError(
        "RE2 cannot compile it (too large once its repetitions are expanded, or not RE2 "
        "syntax); see https://github.com/google/re2/wiki/Syntax"
    ) from None


def searcher(pattern: str, *, ignore_case: bool = False) -> Callable[[str], bool]:
    """A test: does ``pattern`` match anywhere in the text (``re.search`` semantics)."""
    rx = compile_re2(pattern, ignore_case=ignore_case)
    return lambda text: rx.search(text) is not None
