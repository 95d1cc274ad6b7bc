"""Fault types, one module each, registered by their YAML name.

Every module of this package defines one fault type: a frozen model with
``type: Literal["<name>"]``, decorated with :func:`register`, in a module named after it.
Importing the package imports them all (no list to keep), so a new fault type is one new
module here and its tests; the JSON Schema and the faults reference pick it up from
:data:`FAULT_TYPES`. The interface they implement and the registry are in the core
(:mod:`chaosproxy.core.fault`), which imports this package by name when it first needs
the fault types. See docs/adding-a-fault.md.
"""

from __future__ import annotations

import importlib
import pkgutil

from chaosproxy.core.fault import (
    FAULT_TYPES,
    Capabilities,
    Fault,
    Pacing,
    ResponseView,
    Stage,
    Wire,
    register,
)


def _import_fault_modules() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_fault_modules()

__all__ = [
    "FAULT_TYPES",
    "Capabilities",
    "Fault",
    "Pacing",
    "ResponseView",
    "Stage",
    "Wire",
    "register",
]
