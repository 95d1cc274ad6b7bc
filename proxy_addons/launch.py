"""The ``chaosproxy`` console script: makes ``chaosproxy run`` lean, then hands over to cli.

Seven things make a proxy process cheaper; all apply to ``run`` only (other commands, the
in-process Python API and ``mitmdump -s`` are untouched), and ``CHAOSPROXY_NO_LEAN=1``
turns them off:

- **Only the mitmproxy addons it runs.** Importing ``mitmproxy.addons`` imports all ~36
  default addons (the onboarding app's Flask, LDAP proxy auth, ...). The package is
  registered without running its ``__init__``, so the lean set imports alone; the first
  use of anything else from the package loads it whole, as usual.
- **No debug-only type checks per message.** Unless Python runs with -O, mitmproxy
  type-checks every field of every HTTP request and response it builds (about a tenth of
  a passthrough request's CPU). Those checks only exist under ``__debug__``; they are
  skipped as -O would skip them. Running the whole process under ``python -O`` works
  too (chaosproxy never relies on ``assert`` for behaviour) but recompiles every module
  on each start where bytecode caches cannot be written.
- **Header look-ups without detours.** mitmproxy reads a message's headers many times per
  request (Content-Length, Transfer-Encoding, Host, ...); each read calls a key-converting
  method per header field, and a missing header costs a raised and caught KeyError. The
  same look-ups, with the same results, are done in one comprehension (about a tenth of a
  passthrough request's CPU).
- **Option reads without copies of plain values.** mitmproxy reads a few options per
  request (body size limits, header validation, ...); each read deep-copies the value,
  twice. A value of an immutable type (None, bool, int, float, str, bytes) is returned
  as it is, which is what those copies return; any other value is copied as before.
- **No garbage left per request.** mitmproxy's finished HTTP streams hold themselves in
  reference cycles, so each request's flow, messages and buffers waited for the garbage
  collector's full collections: at ~1,000 requests/s, one every few seconds, stalling
  every request for 30-50 ms. Their cycles are cut once they are dropped, and reference
  counting frees them at once. (A closed connection's own layers still form cycles: a
  client that opens a connection per request still leaves those to the collector.)
- **Upstream connections opened during delays**, see
  :mod:`chaosproxy.proxy_addons._internals.warmup`.
- **A settled heap.** Once the proxy is ready, the start-up garbage is collected and what
  is left (imports, the scenario model) is frozen, so later collections do not scan it.
  (What was frozen is never collected: a scenario replaced later by ``--watch`` or the
  control API stays in memory, a few kilobytes.)
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from chaosproxy.proxy_addons._internals import warmup

NO_LEAN_ENV = "CHAOSPROXY_NO_LEAN"


def _is_run(argv: Sequence[str]) -> bool:
    return bool(argv) and argv[0] == "run" and not any(a in ("-h", "--help") for a in argv)


def defer_mitmproxy_default_addons() -> bool:
    """Register ``mitmproxy.addons`` without importing every default addon (see above)."""
    if "mitmproxy.addons" in sys.modules:
        return False
    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None or spec.loader is None:
        return False
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        submodule = f"{spec.name}.{name}"
        if importlib.util.find_spec(submodule) is not None:  # `from mitmproxy.addons import x`
            return importlib.import_module(submodule)
        delattr(module, "__getattr__")
        loader.exec_module(module)  # the real __init__: every default addon
        return getattr(module, name)

    setattr(module, "__getattr__", __getattr__)  # noqa: B010 - a module-level __getattr__
    sys.modules["mitmproxy.addons"] = module
    setattr(sys.modules["mitmproxy"], "addons", module)  # noqa: B010 - as an import would
    return True


def skip_debug_typechecks() -> bool:
    """Drop mitmproxy's ``__debug__``-only per-message type check (what -O does)."""
    from mitmproxy import http

    check = vars(http.MessageData).get("__post_init__")
    if check is None or check is _no_check:
        return False  # running under -O, already skipped, or mitmproxy changed

    http.MessageData.__post_init__ = _no_check  # type: ignore[method-assign]
    return True


def _no_check(self: Any) -> None:
    """Stands in for ``MessageData.__post_init__``, which only type-checks."""


def direct_header_lookups() -> bool:
    """Replace ``Headers.get_all``, ``get``, ``__getitem__`` and ``__contains__`` with
    equivalent implementations that skip the per-field method calls and the KeyError."""
    from mitmproxy import http
    from mitmproxy.utils.strutils import always_bytes

    headers = http.Headers
    if getattr(headers.get_all, "_chaosproxy", False):
        return False

    keys: dict[str, bytes] = {}  # str header name -> its lower-case bytes (str keys only:
    # "host" and b"host" hash alike, and comparing them warns under python -b)

    def get_all(self: http.Headers, name: str | bytes) -> list[str]:
        key = keys.get(name) if type(name) is str else None
        if key is None:
            key = always_bytes(name, "utf-8", "surrogateescape").lower()
            if type(name) is str and len(keys) < 256:  # the names code asks for; bounded
                keys[name] = key
        return [v.decode("utf-8", "surrogateescape") for k, v in self.fields if k.lower() == key]

    def get(self: http.Headers, key: str | bytes, default: Any = None) -> Any:
        values = get_all(self, key)
        return ", ".join(values) if values else default

    def getitem(self: http.Headers, key: str | bytes) -> str:
        values = get_all(self, key)
        if not values:
            raise KeyError(key)
        return ", ".join(values)

    def contains(self: http.Headers, key: object) -> bool:
        return bool(get_all(self, key))  # type: ignore[arg-type]

    get_all.__doc__ = headers.get_all.__doc__
    get_all._chaosproxy = True  # type: ignore[attr-defined]
    headers.get_all = get_all  # type: ignore[method-assign]
    headers.get = get  # type: ignore[method-assign,assignment]
    headers.__getitem__ = getitem  # type: ignore[method-assign,assignment]
    headers.__contains__ = contains  # type: ignore[method-assign,assignment]
    return True


#: Types whose deep copy is the value itself.
_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes})


def plain_option_reads() -> bool:
    """Let ``_Option.current`` return immutable values without deep-copying them."""
    from mitmproxy import optmanager

    option = optmanager._Option
    copying = option.current
    if getattr(copying, "_chaosproxy", False):
        return False
    unset = optmanager.unset

    def current(self: optmanager._Option) -> Any:
        value = self.value
        if value is unset:
            value = self._default
        if type(value) in _IMMUTABLE:
            return value
        return copying(self)

    current._chaosproxy = True  # type: ignore[attr-defined]
    option.current = current  # type: ignore[method-assign]
    return True


def free_finished_streams() -> bool:
    """Let a finished HTTP stream be freed as soon as it is dropped (see ``_Streams``)."""
    from mitmproxy.proxy.layers import http as layers_http

    layer = layers_http.HttpLayer
    init = layer.__init__
    if getattr(init, "_chaosproxy", False):
        return False
    stream = layers_http.HttpStream
    finished = (getattr(stream, "state_done", None), getattr(stream, "state_errored", None))
    if None in finished:
        return False  # mitmproxy changed: leave it alone
    _FINISHED.update(finished)
    _FINISHED_TYPE.append(stream)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.streams = _Streams(self.streams)

    __init__._chaosproxy = True  # type: ignore[attr-defined]
    layer.__init__ = __init__  # type: ignore[method-assign]
    return True


_FINISHED: set[Any] = set()
_FINISHED_TYPE: list[type] = []


class _Streams(dict[Any, Any]):
    """``HttpLayer.streams``: a stream popped from it has been dropped by its layer.

    A finished ``HttpStream`` holds itself in reference cycles (its state functions are
    its own bound methods; its context lists it among its layers), so it and its flow,
    request, response, headers and buffers (about 20 objects per request) outlive the
    request until the garbage collector's next full collection, which then takes tens of
    milliseconds with every request held up behind it. Once the event that dropped the
    stream is handled, those cycles are cut and reference counting frees it all at once.
    """

    __slots__ = ()

    def pop(self, key: Any, *default: Any) -> Any:
        dropped = dict.pop(self, key, *default)
        if type(dropped) in _FINISHED_TYPE:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return dropped
            loop.call_soon(_loosen, dropped)
        return dropped


def _loosen(stream: Any) -> None:
    """Cut a dropped stream's cycles, unless it could still act (it waits on a command, or
    its states are not the final ones, which silently consume any event)."""
    if stream._paused is not None:
        return
    client, server = stream.client_state, stream.server_state
    if getattr(client, "__func__", None) not in _FINISHED:
        return
    if getattr(server, "__func__", None) not in _FINISHED:
        return
    stream.client_state = stream.server_state = stream.handle_event = _consume
    layers = stream.context.layers
    if layers and layers[-1] is stream:
        layers.pop()


def _consume(event: Any) -> Iterator[Any]:
    """What ``state_done`` and ``state_errored`` do, without holding the stream: any
    event that still reached it is silently consumed."""
    yield from ()


_leaned: list[bool] = []


def settle_heap() -> bool:
    """Once a lean proxy is ready: collect its start-up garbage and freeze what is left.

    Imports, the scenario model and the servers leave tens of thousands of long-lived
    objects; without this, the garbage collector's first full collection would come
    under load and scan them all (tens of milliseconds with every request waiting), and
    so would every later one. Frozen, they are never scanned again.
    """
    if not _leaned:
        return False
    gc.collect()
    gc.freeze()
    return True


def lean() -> None:
    """All of the above; call before anything imports mitmproxy."""
    defer_mitmproxy_default_addons()
    skip_debug_typechecks()
    direct_header_lookups()
    plain_option_reads()
    free_finished_streams()
    warmup.install()
    _leaned.append(True)


def main() -> int:
    argv = sys.argv[1:]
    if _is_run(argv) and not os.environ.get(NO_LEAN_ENV):
        lean()
    from chaosproxy.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    # ``python -m chaosproxy.proxy_addons.launch`` runs this file as ``__main__``, a second
    # copy of the module beside the ``chaosproxy.proxy_addons.launch`` the rest of the code
    # imports; run that one, so both see the same state (what :func:`lean` did, for
    # :func:`settle_heap`).
    from chaosproxy.proxy_addons import launch as _module

    sys.exit(_module.main())
