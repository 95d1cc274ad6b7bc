"""``grpc_status``: answer a gRPC call with a status (UNAVAILABLE...) instead of the upstream."""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Literal

from pydantic import PlainValidator, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from chaosproxy.core.fault import Duration, Fault, Wire, check_delay, register
from chaosproxy.core.grpc_protocol import STATUS_CODES, STATUS_NAMES, status_headers
from chaosproxy.core.units import format_duration


def _code(value: object) -> int:
    """A status by canonical name (``UNAVAILABLE``) or number (``14``, ``"14"``)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value in STATUS_NAMES:
            return value
        raise PydanticCustomError("range", "gRPC status codes are 0 to 16 (14 is UNAVAILABLE)")
    if isinstance(value, str) and value in STATUS_CODES:
        return STATUS_CODES[value]
    names = list(STATUS_CODES)
    close = difflib.get_close_matches(str(value).upper(), names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise PydanticCustomError(
        "grpc_code",
        "unknown gRPC status {value}{hint}; give a number 0-16 or one of {names}",
        {"value": _shown(value), "hint": hint, "names": ", ".join(names)},
    )


def _shown(value: object) -> str:
    """``value`` as the scenario file wrote it (``null``, ``true``, ``'text'``)."""
    return repr(value) if isinstance(value, str) else json.dumps(value, default=str)


Code = Annotated[
    int,
    PlainValidator(_code),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(STATUS_CODES)},
                {"type": "integer", "minimum": 0, "maximum": 16},
                {"type": "string", "pattern": "^([0-9]|1[0-6])$"},
            ],
            "description": "a gRPC status: its name (UNAVAILABLE) or number (14)",
        }
    ),
]


@register
class GrpcStatus(Fault):
    """Answer a gRPC call with status ``code`` and ``message``, after ``delay`` if given;
    the upstream is never called.

    The answer is *trailers-only*, as a gRPC server sends an error before any message:
    HTTP 200, ``content-type: application/grpc``, ``grpc-status`` and ``grpc-message`` in
    the headers and no body (over HTTP/2, one HEADERS frame that ends the stream). Without
    ``message`` the message names the rule.
    """

    type: Literal["grpc_status"] = "grpc_status"
    code: Code
    message: str | None = None
    delay: Duration | None = None
    allow_long: bool = False

    @model_validator(mode="after")
    def _check(self) -> GrpcStatus:
        if self.delay is not None:
            check_delay(self.delay, "delay", self.allow_long)
        return self

    @property
    def name(self) -> str:
        """The status's canonical name (``UNAVAILABLE``)."""
        return STATUS_NAMES[self.code]

    def headers(self, rule: str) -> dict[str, str]:
        """The headers of the trailers-only answer."""
        message = self.message
        if message is None:
            message = f"{self.name} injected by chaosproxy (rule {rule})"
        return status_headers(self.code, message)

    async def apply(self, wire: Wire) -> None:
        if self.delay and not await wire.sleep_until(wire.arrival + self.delay):
            return
        wire.respond(200, self.headers(wire.rule), b"")

    def describe(self) -> str:
        text = f"grpc_status {self.name} ({self.code})"
        if self.delay:
            text += f" after {format_duration(self.delay)}"
        return text
