"""A settled heap: once a lean proxy is ready, its start-up garbage is collected and what
is left (imports, the scenario model) is frozen, so later collections do not scan it.

Imports, the scenario model and the servers leave tens of thousands of long-lived objects;
without this, the garbage collector's first full collection would come under load and
scan them all (tens of milliseconds with every request waiting), and so would every later
one. Frozen, they are never scanned again. (What was frozen is never collected: a scenario
replaced later by ``--watch`` or the control API stays in memory, a few kilobytes.)

Not a change to mitmproxy itself but part of the lean start: applying it only arms
:func:`settle`, which the proxy calls when it is ready (``_internals.settle_heap``).
"""

from __future__ import annotations

import gc

from chaosproxy.proxy_addons._internals import Patch, missing_attributes

_armed: list[bool] = []


def settle() -> bool:
    """Collect the start-up garbage and freeze the rest (once armed by the patch)."""
    if not _armed:
        return False
    gc.collect()
    gc.freeze()
    return True


PATCH = Patch(
    name="settle_heap",
    target="the garbage collector (gc.freeze), once the proxy is ready",
    check=lambda: missing_attributes(gc, "freeze", "collect"),
    apply=lambda _: _armed.append(True),
    fallback="the start-up objects are scanned by every full collection",
)
