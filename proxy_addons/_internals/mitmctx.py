"""mitmproxy's ``ctx`` per thread, so that several proxies can run in one process.

mitmproxy keeps the running master, its options and its log in module globals of
``mitmproxy.ctx``, set by each ``Master()``; its connection handlers read
``ctx.master`` when a client connects. With two in-process proxies the second master
replaced the first one's there, and the first proxy's clients were served by the
second proxy's addons. :func:`install` makes those three names per thread: each
in-process proxy runs its own event loop in its own thread and creates its master
there, so each thread sees its own master. A thread that never created one (the main
thread of ``mitmdump``, a test calling into an addon) sees the last one created, as
before. Applied when a proxy starts (never on import).
"""

from __future__ import annotations

import sys
import threading
import types
from typing import Any

from chaosproxy.proxy_addons._internals import Patch

_NAMES = ("master", "options", "log")
_local = threading.local()
_last: dict[str, Any] = {}


def _attribute(name: str) -> property:
    def get(module: types.ModuleType) -> Any:
        value = getattr(_local, name, None)
        if value is not None:
            return value
        if name in _last:
            return _last[name]
        raise AttributeError(f"module 'mitmproxy.ctx' has no attribute {name!r}")

    def set_(module: types.ModuleType, value: Any) -> None:
        setattr(_local, name, value)
        _last[name] = value

    def delete(module: types.ModuleType) -> None:
        if hasattr(_local, name):
            delattr(_local, name)
        _last.pop(name, None)

    return property(get, set_, delete)


class _PerThreadContext(types.ModuleType):
    master = _attribute("master")
    options = _attribute("options")
    log = _attribute("log")


def install() -> None:
    """Make ``mitmproxy.ctx.master``, ``.options`` and ``.log`` per thread (idempotent)."""
    import mitmproxy.ctx  # noqa: F401 - make sure the module exists

    module = sys.modules["mitmproxy.ctx"]
    if isinstance(module, _PerThreadContext):
        return
    for name in _NAMES:
        if name in module.__dict__:  # a master created before: keep it as the default
            _last[name] = module.__dict__.pop(name)
    module.__class__ = _PerThreadContext


def check() -> str | None:
    import mitmproxy.ctx  # noqa: F401 - make sure the module exists

    module = sys.modules["mitmproxy.ctx"]
    if isinstance(module, _PerThreadContext):
        return None
    if type(module) is not types.ModuleType:
        return f"mitmproxy.ctx is a {type(module).__name__}, not a plain module"
    from mitmproxy import master

    init = getattr(master.Master.__init__, "__code__", None)
    if init is None or not {"master", "options"} <= set(init.co_names):
        return "mitmproxy.master.Master.__init__ no longer sets mitmproxy.ctx"
    return None


PATCH = Patch(
    name="ctx_per_thread",
    target="mitmproxy.ctx (master, options, log)",
    check=check,
    apply=lambda _: install(),
    fallback="in-process proxies share the last master created (one proxy per process)",
)
