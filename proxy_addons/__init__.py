"""The mitmproxy side of chaosproxy, installed as ``chaosproxy.proxy_addons``.

The addon (``chaos``: thin hooks that ask a ``decider`` and let the faults act) and its
collaborators (``recorder``: decision records and metrics; ``arrivals``: when a request
arrived; ``timeline``: the phase timer; ``gate``: the start-up hold; ``services``: the
control API and ``--watch``; ``flowhost``, ``waits``, ``bodies``, ``chaos_options``), the
flow wiring (``wire``), the loopback relay that paces throttled bodies (``relay``), the
in-process runner (``runner``), worker processes (``workers``) and the scenario file
watcher (``watch``). Every patch of mitmproxy's internals lives in ``_internals``.

``mitmdump -s proxy_addons/chaos.py`` loads the addon file by path, so that file imports
the installed ``chaosproxy`` package absolutely.
"""

from __future__ import annotations

if __name__ == "proxy_addons":  # imported from a checkout under its old top-level name
    import warnings

    warnings.warn(
        "the import name 'proxy_addons' is gone: import 'chaosproxy' "
        "(e.g. 'from chaosproxy import ChaosProxy'); see CHANGELOG.md",
        DeprecationWarning,
        stacklevel=2,
    )
