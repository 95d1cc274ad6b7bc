"""Durations, sizes and rates as scenario files write them: ``250ms``, ``10KB``, ``10KB/s``;
and counts as messages write them (``1 fault``, ``2 faults``)."""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}

_NUMBER = r"(?P<num>\d+(?:\.\d*)?|\.\d+)"
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>us|ms|s|m|h)?\s*$")
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[kmg]i?b|b)?\s*$", re.IGNORECASE)
_RATE_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[kmg]i?b|b)?\s*/\s*s\s*$", re.IGNORECASE)

DURATION_PATTERN = r"^\s*(\d+(\.\d*)?|\.\d+)\s*(us|ms|s|m|h)?\s*$"
SIZE_PATTERN = r"^\s*(\d+(\.\d*)?|\.\d+)\s*([kKmMgG][iI]?[bB]|[bB])?\s*$"
RATE_PATTERN = r"^\s*(\d+(\.\d*)?|\.\d+)\s*([kKmMgG][iI]?[bB]|[bB])?\s*/\s*s\s*$"


def _check_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a {what}, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a {what} must be a finite number >= 0, got {value!r}")
    return float(value)


def parse_duration(value: object) -> float:
    """Return seconds for ``250ms``, ``1.5s``, ``2m``, ``1h`` or a plain number of seconds."""
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(
                f"{value!r} is not a duration: write a number with a unit, "
                "such as 250ms, 1.5s, 2m or 1h (a bare number means seconds)"
            )
        return float(m["num"]) * _DURATION_UNITS[m["unit"] or "s"]
    return _check_number(value, "duration")


def parse_size(value: object) -> int:
    """Return bytes for ``512``, ``10KB`` (1000 bytes each), ``1MiB`` (1024**2)."""
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(
                f"{value!r} is not a size: write bytes with an optional unit, "
                "such as 512, 16KB (1000 bytes) or 16KiB (1024 bytes)"
            )
        return round(float(m["num"]) * _SIZE_UNITS[(m["unit"] or "").lower()])
    return round(_check_number(value, "size"))


def parse_rate(value: object) -> float:
    """Return bytes per second for ``10KB/s``, ``1MiB/s`` or a plain number of bytes/s."""
    if isinstance(value, str):
        m = _RATE_RE.match(value)
        if not m:
            raise ValueError(
                f"{value!r} is not a rate: write a size per second, such as 10KB/s or 1MiB/s"
            )
        return float(m["num"]) * _SIZE_UNITS[(m["unit"] or "").lower()]
    return _check_number(value, "rate")


def format_duration(seconds: float) -> str:
    """Render seconds the way a scenario would write them (``300ms``, ``1.5s``, ``2m``)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


def counted(n: int, noun: str) -> str:
    """``n`` and the noun in agreement with it: ``1 fault``, ``0 faults``, ``2 requests``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
