"""What every fault type shares: the model base, the stage it acts in, and the Wire it acts on.

A fault is a frozen model whose fields are its YAML parameters, with one coroutine,
``apply``, that acts on a :class:`Wire`. The wire is the addon's adapter to one mitmproxy
flow, so fault modules stay free of mitmproxy imports and can be tested with a fake wire.
Matching, probability, counters and phases live in the engine, never in a fault.
"""

from __future__ import annotations

import abc
import enum
import json
import random
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, core_schema

from chaosproxy.core import units

if TYPE_CHECKING:
    from chaosproxy.faults.throttle import Pacing

#: Delays longer than this are refused unless the fault says ``allow_long: true``.
MAX_DELAY = 600.0
#: No duration in a scenario may be longer than this (a phase, a ttl, a rate window, and a
#: delay even with ``allow_long``): beyond it, a value is a typo, not a test.
MAX_DURATION = 7 * 24 * 3600.0
#: Throttle rates below this (bytes per second) need ``allow_long: true``.
MIN_RATE = 1.0


class Stage(enum.StrEnum):
    """When a fault acts: before the upstream is called, or on the upstream's answer."""

    REQUEST = "request"
    RESPONSE = "response"


class ResponseView(Protocol):
    """The answer a response-stage fault works on (the upstream's, or one set earlier)."""

    status: int
    headers: MutableMapping[str, str]
    arrival: float
    """Wall-clock time the answer was complete at the proxy."""

    @property
    def content(self) -> bytes:
        """The body as the client will decode it (Content-Encoding undone)."""

    def set_content(self, body: bytes) -> None:
        """Replace the body, re-encoding it the way it arrived and fixing Content-Length."""


class Wire(Protocol):
    """One flow, as a fault sees it. Implemented by the addon on top of mitmproxy."""

    rule: str
    """Name of the rule that fired."""
    arrival: float
    """Wall-clock time (``time.time()``) the request arrived at the proxy."""
    ended: bool
    """True once the client is gone or the connection was closed or reset."""
    retry_after: int | None
    """Seconds until a rate-limit window rolls, when a rate_limit rule fired."""

    @property
    def rng(self) -> random.Random:
        """The fault's own random stream, derived from (seed, rule, match number)."""

    @property
    def response(self) -> ResponseView | None:
        """The answer, in the response stage; None before it exists."""

    async def sleep_until(self, when: float) -> bool:
        """Wait until wall-clock ``when``; False if the client left first (the flow is over)."""

    async def hold(self) -> None:
        """Wait until the client gives up (or the proxy stops)."""

    def respond(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Answer with this response instead of the upstream's (or replace the upstream's)."""

    def close(self) -> None:
        """Close the client connection without an answer (HTTP/2: reset the stream)."""

    def pace(self, pacing: Pacing) -> None:
        """Let the upstream's answer through with its body paced (see faults/throttle.py)."""

    def cut(self, keep: float) -> None:
        """Send the answer's head with the full Content-Length of its body as sent, but only
        the first ``keep`` fraction of that body, then close (HTTP/2: reset the stream)."""

    def reset(self) -> None:
        """Reset the client connection with a TCP RST (HTTP/2: reset the stream)."""


class Fault(BaseModel, abc.ABC):
    """Base of all fault types: the YAML parameters plus how they act on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str

    #: Fault types that need the upstream's whole body buffered before they act.
    needs_body: ClassVar[bool] = False
    #: Fault types that act on the body as it streams through (no response stage after).
    streams_body: ClassVar[bool] = False
    #: Fault types that, acting on the request, still send it upstream through mitmproxy
    #: when they are done (its upstream connection can be opened while they wait).
    passes_on: ClassVar[bool] = False

    @property
    def stage(self) -> Stage:
        """When this fault acts; request-stage unless the type says otherwise."""
        return Stage.REQUEST

    @abc.abstractmethod
    async def apply(self, wire: Wire) -> None:
        """Act on one flow."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short human summary for logs and stats, e.g. ``error 503``."""


F = TypeVar("F", bound=type[Fault])

#: YAML name -> fault class, filled by :func:`register` as fault modules are imported.
FAULT_TYPES: dict[str, type[Fault]] = {}


def register(cls: F) -> F:
    """Register a fault class under the YAML name its ``type`` literal gives."""
    name = cls.model_fields["type"].default  # type: ignore[call-overload]
    if not isinstance(name, str) or name in FAULT_TYPES:
        raise ValueError(f"fault class {cls.__name__} needs a unique default for 'type'")
    FAULT_TYPES[name] = cls
    return cls


def _json_number_or(pattern: str, description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": pattern},
            ],
            "description": description,
        }
    )


def _at_most_a_week(value: float) -> float:
    if value > MAX_DURATION:
        raise ValueError(
            f"{value / 3600:.6g}h is longer than {units.format_duration(MAX_DURATION)} "
            "(a week): no scenario needs that much"
        )
    return value


Duration = Annotated[
    float,
    BeforeValidator(units.parse_duration),
    AfterValidator(_at_most_a_week),
    _json_number_or(units.DURATION_PATTERN, "a duration: 250ms, 1.5s, 2m, 1h, or seconds"),
]
Size = Annotated[
    int,
    BeforeValidator(units.parse_size),
    _json_number_or(units.SIZE_PATTERN, "a size: 512, 10KB (1000 bytes), 10KiB (1024 bytes)"),
]
Rate = Annotated[
    float,
    BeforeValidator(units.parse_rate),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": units.RATE_PATTERN},
            ],
            "description": "a rate: 10KB/s, 1MiB/s, or bytes per second",
        }
    ),
]


@dataclass(frozen=True)
class Range:
    """Annotated metadata: a number range with a friendly message and the JSON Schema bounds."""

    lo: float
    hi: float | None
    message: str

    def _check(self, value: Any) -> Any:
        if value != value or value < self.lo or (self.hi is not None and value > self.hi):
            raise PydanticCustomError("range", self.message)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        out["minimum"] = self.lo
        if self.hi is not None:
            out["maximum"] = self.hi
        return out


Status = Annotated[int, Range(100, 599, "must be an HTTP status between 100 and 599")]


def _header_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return value


HeaderMap = dict[str, Annotated[str, BeforeValidator(_header_value)]]


def check_delay(value: float, field: str, allow_long: bool) -> None:
    """Refuse an absurd delay unless the fault opted in with ``allow_long``."""
    if value > MAX_DELAY and not allow_long:
        raise ValueError(
            f"{field} of {units.format_duration(value)} is longer than "
            f"{units.format_duration(MAX_DELAY)}; set allow_long: true if you mean it"
        )


def error_body(status: int, rule: str, extra: Mapping[str, Any] | None = None) -> bytes:
    """The JSON body chaosproxy answers with when a scenario gives none: it names the rule."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Injected error"
    doc: dict[str, Any] = {"error": reason, "status": status, "rule": rule}
    if extra:
        doc.update(extra)
    doc["injected_by"] = "chaosproxy"
    return json.dumps(doc).encode()


JSON_HEADERS: Mapping[str, str] = {"content-type": "application/json"}
