"""Every patch of mitmproxy's internals, in one place (the seam).

Nothing outside this package reaches into mitmproxy's private names or replaces its
functions. Each patch module here declares ``PATCH``, a :class:`Patch`: its name, what it
targets, a check that the target is there with the shape the patch expects, how to apply
it, and what happens instead when it is not (mitmproxy's own behaviour). :func:`apply` is
the one way to apply them: a patch whose check fails (or whose apply raises) is left out
with one warning naming it and the missing target, and the proxy carries on as stock
mitmproxy would; never a crash, never a silent no-op. :func:`active` lists the patches
applied in this process; :func:`in_force` adds those ``--workers``' workers reported
(``chaosproxy run -v`` logs it, ``GET /healthz`` shows it).

When each group is applied:

- :data:`LEAN`: by ``chaosproxy run`` (and ``--workers``' workers) before anything imports
  mitmproxy; ``CHAOSPROXY_NO_LEAN=1`` leaves them out (see :func:`lean_start`).
- :data:`PROXY`: by every proxy start (``chaosproxy run``, :class:`~chaosproxy.ChaosProxy`)
  before its master is built.
- :data:`ADDON`: by the addon's ``load`` hook (so ``mitmdump -s`` has them too).
- :data:`MASTER` (lean too) and :data:`LISTENING`: for each master, when it is built and
  once its listeners are bound.
- :data:`WORKER`: in each ``--workers`` worker process.

Importing this package imports no mitmproxy module and patches nothing.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("chaosproxy")

NO_LEAN_ENV = "CHAOSPROXY_NO_LEAN"

#: patch name -> the module of this package that declares it
MODULES = {
    "lazy_default_addons": "lazyaddons",
    "no_debug_typechecks": "typechecks",
    "header_lookups": "headers",
    "option_reads": "options",
    "free_finished_streams": "streams",
    "early_upstream": "warmup",
    "settle_heap": "heap",
    "ctx_per_thread": "mitmctx",
    "client_sockets": "clientsock",
    "stop_listeners": "listeners",
    "receive_times": "receivetimes",
    "fast_hooks": "fasthooks",
    "listen_backlog": "backlog",
    "reuse_port": "reuseport",
    "timed_out_answers": "upstreamtimeout",
    "h2_for_h2_clients": "h2alpn",
    "websocket_close": "wsclose",
    "truncated_chunks": "chunkframing",
}

LEAN = (
    "lazy_default_addons",
    "no_debug_typechecks",
    "header_lookups",
    "option_reads",
    "free_finished_streams",
    "early_upstream",
    "settle_heap",
)
PROXY = ("ctx_per_thread", "stop_listeners")
ADDON = (
    "client_sockets",
    "receive_times",
    "timed_out_answers",
    "h2_for_h2_clients",
    "websocket_close",
    "truncated_chunks",
)
MASTER = ("fast_hooks",)
LISTENING = ("listen_backlog",)
WORKER = ("reuse_port",)


@dataclass(frozen=True)
class Patch:
    """One patch of mitmproxy: what it targets, how to check and apply it, and what runs
    when it cannot be applied."""

    name: str
    #: what it changes or reads, for people: ``mitmproxy.http.Headers.get_all``
    target: str
    #: None when the target is there with the expected shape, else what is missing
    check: Callable[[], str | None]
    #: applies it; gets the master for per-master patches (``per_master``), else None
    apply: Callable[[Any], object]
    #: what happens without it (mitmproxy's own behaviour), said in the warning
    fallback: str
    #: applied to each master (True) or once per process (False)
    per_master: bool = False


_lock = threading.RLock()
#: name -> patch, in the order they were first applied in this process
_active: dict[str, Patch] = {}
#: name -> why it was left out (warned once)
_failed: dict[str, str] = {}
#: names the ``--workers`` worker processes reported active (in this coordinator)
_in_workers: dict[str, None] = {}


def declaration(name: str) -> Patch:
    """The :class:`Patch` named ``name`` (imports its module; KeyError for an unknown one)."""
    module = importlib.import_module(f"{__name__}.{MODULES[name]}")
    patch: Patch = module.PATCH
    return patch


def declarations() -> list[Patch]:
    """Every patch, in :data:`MODULES` order (imports every patch module, so mitmproxy)."""
    return [declaration(name) for name in MODULES]


def apply(names: Iterable[str], master: Any = None) -> list[str]:
    """Apply the named patches (a process-wide one once; a per-master one to ``master``).

    A patch whose module does not load, whose check fails, or whose apply raises, is left
    out: one warning (the first time) names it, what is missing and what runs instead.
    Returns the names among ``names`` that are active.
    """
    applied: list[str] = []
    with _lock:
        for name in names:
            if name in _failed:
                continue  # warned already; stock behaviour
            try:
                patch = declaration(name)
            except (ImportError, AttributeError) as exc:  # its module (or mitmproxy's) moved
                _failed[name] = f"its module did not load ({type(exc).__name__}: {exc})"
                logger.warning(
                    "mitmproxy patch %s is off: %s; mitmproxy's own behaviour stays",
                    name,
                    _failed[name],
                )
                continue
            if name in _active and not patch.per_master:
                applied.append(name)
                continue
            problem = _problem(patch.check)
            if problem is None:
                try:
                    patch.apply(master)
                except Exception as exc:  # the check missed a change: stock behaviour
                    problem = f"applying it failed ({type(exc).__name__}: {exc})"
            if problem is not None:
                _failed[name] = problem
                logger.warning(
                    "mitmproxy patch %s is off: %s (target: %s); %s",
                    name,
                    problem,
                    patch.target,
                    patch.fallback,
                )
                continue
            _active.setdefault(name, patch)
            applied.append(name)
    return applied


def _problem(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    except Exception as exc:  # an import that fails, a module that moved
        return f"{type(exc).__name__}: {exc}"


def lean_start() -> list[str]:
    """Apply :data:`LEAN` (before anything imports mitmproxy) unless ``CHAOSPROXY_NO_LEAN``
    is set; returns what is active."""
    if os.environ.get(NO_LEAN_ENV):
        return []
    return apply(LEAN)


def is_lean() -> bool:
    """True unless ``CHAOSPROXY_NO_LEAN`` turns the lean patches off."""
    return not os.environ.get(NO_LEAN_ENV)


def is_active(name: str) -> bool:
    return name in _active


def active() -> list[str]:
    """The patches applied in this process, in the order they were applied."""
    with _lock:
        return list(_active)


def note_worker_patches(names: Iterable[str]) -> None:
    """A ``--workers`` worker process reports the patches active in it."""
    with _lock:
        _in_workers.update(dict.fromkeys(names))


def in_force() -> list[str]:
    """What serves this proxy's traffic: :func:`active`, and with ``--workers`` what the
    worker processes reported (``GET /healthz`` and ``chaosproxy run -v`` list this)."""
    with _lock:
        return [*_active, *(name for name in _in_workers if name not in _active)]


def failed() -> dict[str, str]:
    """The patches left out in this process, with why."""
    with _lock:
        return dict(_failed)


def settle_heap() -> bool:
    """Once a lean proxy is ready: collect its start-up garbage and freeze the rest (only
    when the ``settle_heap`` patch is active; see :mod:`.heap`)."""
    if "settle_heap" not in _active:
        return False
    from chaosproxy.proxy_addons._internals import heap

    return heap.settle()


# ---------------------------------------------------------------------- checks' helpers


def missing_attributes(owner: Any, *names: str) -> str | None:
    """``None`` when ``owner`` has every attribute, else which ones it lacks."""
    absent = [n for n in names if not hasattr(owner, n)]
    if not absent:
        return None
    label = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", repr(owner))
    return f"{label} has no {', '.join(absent)}"


def missing_instance_attributes(cls: type, *names: str) -> str | None:
    """``None`` when instances of ``cls`` get every attribute (declared on the class, or
    assigned in its ``__init__``), else which ones they do not."""
    declared: set[str] = set()
    for klass in cls.__mro__:
        declared.update(getattr(klass, "__annotations__", {}))
        init = vars(klass).get("__init__")
        code = getattr(init, "__code__", None)
        if code is not None:
            declared.update(code.co_names)
    absent = [n for n in names if n not in declared and not hasattr(cls, n)]
    if not absent:
        return None
    return f"{cls.__qualname__} instances have no {', '.join(absent)}"
