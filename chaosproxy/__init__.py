"""chaosproxy: a fault-injection proxy for resilience testing, built on mitmproxy.

What users import lives here: :class:`ChaosProxy` (an in-process proxy for tests and
scripts), :class:`Calls` (the resilience oracle's view of what the proxy saw) and
:func:`load_scenario`. Importing this package starts nothing and imports no mitmproxy
module; each name is loaded when it is first used.

The layers, from the bottom up (an import-linter contract keeps them so):

- ``core``: scenario model, YAML source, units, engine, decision log. No mitmproxy.
- ``faults``: one module per fault type, found by their YAML name.
- ``control``: the admin HTTP API and its one client.
- ``proxy_addons``: the mitmproxy side (the addon, flow wiring, relay, runner, workers),
  with every patch of mitmproxy's internals in ``proxy_addons._internals``.
- ``cli`` and ``testing``: the command line, and the pytest plugin, oracle and Python API.
- ``demo_app``: the workshop demo (Flask app, fake upstream, dashboard).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaosproxy.core.scenario import load_file as load_scenario
    from chaosproxy.testing.api import ChaosProxy
    from chaosproxy.testing.oracle import Calls

__all__ = ["Calls", "ChaosProxy", "__version__", "load_scenario"]

_LAZY = {
    "ChaosProxy": ("chaosproxy.testing.api", "ChaosProxy"),
    "Calls": ("chaosproxy.testing.oracle", "Calls"),
    "load_scenario": ("chaosproxy.core.scenario", "load_file"),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("chaosproxy")
        except PackageNotFoundError:  # a checkout that was never installed
            return "0+unknown"
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'chaosproxy' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "__version__"])
