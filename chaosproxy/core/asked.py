"""Faults a request asks for itself (``request_faults: true``): the header's grammar. Pure.

A test aid in the spirit of Envoy's ``x-envoy-fault-*`` headers: with the scenario's
``request_faults: true``, a request carrying ``X-Chaos-Fault`` gets the faults it names,
for that one request, instead of the scenario's rules::

    X-Chaos-Fault: error=503
    X-Chaos-Fault: latency=200ms; error=502
    X-Chaos-Fault: abort=close

Grammar: one or more faults separated by ``;`` (spaces around parts are ignored); each is
``NAME=VALUE`` or ``NAME`` alone, the name in any case:

========================  =====================================================
``error=STATUS``          answer STATUS (200-599) instead of calling the upstream
``latency=DURATION``      hold the request that long (``200ms``, ``1.5s``) first
``abort`` / ``abort=HOW`` drop the connection: ``reset`` (default) or ``close``
``timeout=DURATION``      hold that long, then close the connection
========================  =====================================================

Values are checked as the same fields of a scenario file are (``error=99`` is refused
like ``status: 99``). :func:`parse` raises :class:`AskError` naming the part that is
wrong; the addon then ignores the header (one warning, counted), never answers 400.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from chaosproxy.core.fault import Fault, fault_types

#: The request header that asks for faults, and the one that carries the admin token for a
#: client that is not on loopback.
HEADER = "X-Chaos-Fault"
TOKEN_HEADER = "X-Chaos-Token"
#: Longer header values are refused (a test asks for a few faults, not a program).
MAX_LENGTH = 512
MAX_FAULTS = 8

#: name -> (fault type, the field its value sets, the value when none is given)
_NAMES: dict[str, tuple[str, str | None, str | None]] = {
    "error": ("error", "status", None),
    "latency": ("latency", "delay", None),
    "abort": ("abort", "how", "reset"),
    "timeout": ("timeout", "after", None),
}
NAMES = tuple(_NAMES)


class AskError(ValueError):
    """The header's value is not a list of faults this grammar knows."""


def parse(value: str) -> tuple[Fault, ...]:
    """The faults ``value`` (an ``X-Chaos-Fault`` header) asks for, in order."""
    if len(value) > MAX_LENGTH:
        raise AskError(f"longer than {MAX_LENGTH} characters")
    parts = [p.strip() for p in value.split(";")]
    parts = [p for p in parts if p]
    if not parts:
        raise AskError(f"names no fault (use {', '.join(NAMES)}, separated by ';')")
    if len(parts) > MAX_FAULTS:
        raise AskError(f"names {len(parts)} faults; at most {MAX_FAULTS}")
    return tuple(_fault(i, part) for i, part in enumerate(parts, 1))


def _fault(index: int, part: str) -> Fault:
    name, eq, raw = part.partition("=")
    name, raw = name.strip().lower(), raw.strip()
    where = f"part {index} ({part!r})"
    if name not in _NAMES:
        raise AskError(f"{where}: unknown fault {name!r}; use {', '.join(NAMES)}")
    kind, field, default = _NAMES[name]
    if not eq:
        if default is None:
            raise AskError(f"{where}: {name} needs a value ({name}=...)")
        raw = default
    elif not raw:
        raise AskError(f"{where}: {name}= has no value")
    params: dict[str, Any] = {"type": kind}
    if field == "status":  # a header is text: a status is read as a number here
        if not raw.isdigit():
            raise AskError(f"{where}: must be a whole number (an HTTP status), got {raw!r}")
        params[field] = int(raw)
    elif field is not None:
        params[field] = raw
    try:
        return fault_types()[kind].model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise AskError(f"{where}: {message}") from None
