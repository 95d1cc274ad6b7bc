"""Header look-ups without detours.

mitmproxy reads a message's headers many times per request (Content-Length,
Transfer-Encoding, Host, ...); each read calls a key-converting method per header field,
and a missing header costs a raised and caught KeyError. ``Headers.get_all``, ``get``,
``__getitem__`` and ``__contains__`` are replaced by equivalent implementations that do
the same look-ups, with the same results, in one comprehension (about a tenth of a
passthrough request's CPU). They rely on ``Headers.fields``: (name, value) byte pairs.
"""

from __future__ import annotations

import inspect
from typing import Any

from chaosproxy.proxy_addons._internals import (
    Patch,
    missing_attributes,
    missing_instance_attributes,
)

METHODS = ("get_all", "get", "__getitem__", "__contains__")


def check() -> str | None:
    from mitmproxy import http
    from mitmproxy.utils import strutils

    headers = getattr(http, "Headers", None)
    if not isinstance(headers, type):
        return "mitmproxy.http.Headers is not a class"
    problem = (
        missing_attributes(headers, *METHODS)
        or missing_instance_attributes(headers, "fields")
        or missing_attributes(strutils, "always_bytes")
    )
    if problem:
        return problem
    if list(inspect.signature(http.Headers.get_all).parameters) != ["self", "name"]:
        return "Headers.get_all(self, name) changed its signature"
    fields = http.Headers([(b"A", b"1")]).fields
    if fields != ((b"A", b"1"),):
        return "Headers.fields is no longer a tuple of (name, value) byte pairs"
    return None


def applied() -> bool:
    from mitmproxy import http

    return bool(getattr(http.Headers.get_all, "_chaosproxy", False))


def apply(_: Any = None) -> None:
    from mitmproxy import http
    from mitmproxy.utils.strutils import always_bytes

    headers = http.Headers
    if applied():
        return

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


PATCH = Patch(
    name="header_lookups",
    target="mitmproxy.http.Headers.get_all, get, __getitem__, __contains__",
    check=lambda: None if applied() else check(),
    apply=apply,
    fallback="mitmproxy's own header look-ups (slower)",
)
