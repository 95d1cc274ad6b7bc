"""No debug-only type checks per message (what ``python -O`` skips).

Unless Python runs with -O, mitmproxy type-checks every field of every HTTP request and
response it builds (about a tenth of a passthrough request's CPU). Those checks only exist
under ``__debug__``; they are skipped as -O would skip them. Running the whole process
under ``python -O`` works too (chaosproxy never relies on ``assert`` for behaviour) but
recompiles every module on each start where bytecode caches cannot be written.
"""

from __future__ import annotations

from typing import Any

from chaosproxy.proxy_addons._internals import Patch


def check() -> str | None:
    from mitmproxy import http

    if not __debug__:
        return None  # python -O: mitmproxy defines no check to skip
    if not isinstance(getattr(http, "MessageData", None), type):
        return "mitmproxy.http.MessageData is not a class"
    if not callable(vars(http.MessageData).get("__post_init__")):
        return "mitmproxy.http.MessageData has no __post_init__ (its debug type check)"
    return None


def apply(_: Any = None) -> None:
    from mitmproxy import http

    if not __debug__:
        return
    http.MessageData.__post_init__ = _no_check  # type: ignore[method-assign]


def _no_check(self: Any) -> None:
    """Stands in for ``MessageData.__post_init__``, which only type-checks."""


def applied() -> bool:
    from mitmproxy import http

    return vars(http.MessageData).get("__post_init__") is _no_check


PATCH = Patch(
    name="no_debug_typechecks",
    target="mitmproxy.http.MessageData.__post_init__",
    check=lambda: None if applied() else check(),
    apply=lambda _: None if applied() else apply(),
    fallback="every message's fields are type-checked (as without python -O)",
)
