"""gRPC over HTTP/2, as far as matching and faults need it: what a gRPC call looks like,
its status codes, its deadline header and its message encoding. No mitmproxy.

A gRPC call is an HTTP/2 POST to ``/<package>.<Service>/<Method>`` with a content-type of
``application/grpc`` (or ``application/grpc+proto``, ``application/grpc-web``...). Its
status travels in ``grpc-status`` / ``grpc-message``: in the trailers, or in the headers
of a *trailers-only* answer (HTTP 200, no body), which is how a fault answers.
See the gRPC "PROTOCOL-HTTP2" document.
"""

from __future__ import annotations

import re

#: The gRPC status codes by canonical name (grpc/status.proto).
STATUS_CODES: dict[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
#: Number -> canonical name.
STATUS_NAMES: dict[int, str] = {number: name for name, number in STATUS_CODES.items()}

CONTENT_TYPE = "application/grpc"


def is_grpc(content_type: str | None) -> bool:
    """Whether a request with this content-type is a gRPC call (``application/grpc*``)."""
    return content_type is not None and content_type.strip().lower().startswith(CONTENT_TYPE)


def method_of(path: str) -> str:
    """The call's ``package.Service/Method``: its ``:path`` without the leading slash."""
    return path[1:] if path.startswith("/") else path


# ``package.Service/Method``: each part a protobuf full name or method name, with glob
# characters allowed. Without a slash a glob needs a ``*`` (which crosses ``/``): ``pkg.*``
# matches every call of package pkg, ``*`` every call.
_CHARS = r"[A-Za-z0-9_.*?\[\]!-]"
#: What a glob on a gRPC method may look like (JSON Schema and :func:`check_method_pattern`).
METHOD_PATTERN = rf"^(re:.+|{_CHARS}*\*{_CHARS}*|{_CHARS}+/{_CHARS}+)$"
_METHOD_RE = re.compile(METHOD_PATTERN)


def check_method_pattern(value: str) -> str:
    """Refuse a ``match.grpc`` glob that can match no gRPC method, saying how to write it."""
    if value.startswith("re:") or _METHOD_RE.match(value):
        return value
    example = "e.g. pkg.Service/Method, pkg.Service/*, */Get* or pkg.*"
    if not value:
        raise ValueError(f"an empty pattern names no method: write SERVICE/METHOD; {example}")
    if value.startswith("/"):
        raise ValueError(
            f"{value!r}: write the method without the leading slash ({value[1:]!r}); {example}"
        )
    if "/" not in value:
        raise ValueError(
            f"{value!r} names no method: write SERVICE/METHOD ({value}/* for every method "
            f"of that service); {example}"
        )
    if value.count("/") > 1 or value.endswith("/"):
        raise ValueError(f"{value!r}: a gRPC method is one SERVICE/METHOD; {example}")
    raise ValueError(
        f"{value!r} has characters no gRPC service or method name has (letters, digits, "
        f"_ and . only, with the glob characters * ? [ ] !); {example}"
    )


_TIMEOUT = re.compile(r"^\s*(\d{1,8})([HMSmun])\s*$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str | None) -> float | None:
    """A ``grpc-timeout`` header (``100m``, ``5S``...) in seconds; None if absent or bad."""
    if value is None:
        return None
    found = _TIMEOUT.match(value)
    if found is None:
        return None
    return int(found[1]) * _TIMEOUT_UNITS[found[2]]


# The spec: percent-encode every byte outside 0x20-0x7E, and "%" itself.
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("%")}


def encode_message(text: str) -> str:
    """``grpc-message``'s percent-encoding of ``text`` (UTF-8)."""
    return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in text.encode("utf-8"))


def status_headers(code: int, message: str) -> dict[str, str]:
    """The headers of a trailers-only answer with this status."""
    headers = {"content-type": CONTENT_TYPE, "grpc-status": str(code)}
    if message:
        headers["grpc-message"] = encode_message(message)
    return headers
