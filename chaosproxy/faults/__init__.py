"""Fault types, one module each, registered by their YAML name.

A new fault type is one new module here (a frozen model with ``type: Literal[...]``,
decorated with :func:`register`), imported below, plus a README section.
"""

from __future__ import annotations

from chaosproxy.faults import abort, error, latency, malformed, rate_limit, throttle, timeout
from chaosproxy.faults.base import FAULT_TYPES, Fault, ResponseView, Stage, Wire, register

__all__ = [
    "FAULT_TYPES",
    "Fault",
    "ResponseView",
    "Stage",
    "Wire",
    "abort",
    "error",
    "latency",
    "malformed",
    "rate_limit",
    "register",
    "throttle",
    "timeout",
]
