"""The fault interface: the model base, its capabilities, the Wire it acts on, the registry.

The fault types themselves live one module each in :mod:`chaosproxy.faults`, a layer above
this one: they import this module and register themselves. The core finds them by
package name when it first needs them (:func:`fault_types`), the way a host finds its
plugins, so nothing in the core imports a fault module.

A fault is a frozen model whose fields are its YAML parameters, with one coroutine,
``apply``, that acts on a :class:`Wire`. The wire is the addon's adapter to one mitmproxy
flow, so fault modules stay free of mitmproxy imports and can be tested with a fake wire.
Matching, probability, counters and phases live in the engine, never in a fault.

A fault type declares what it needs as class attributes (its :class:`Capabilities`): the
stages it acts in, whether it reads the body, streams it, keeps state across requests or
gates its rule. The engine, the scenario model and the addon ask these, never the class.
"""

from __future__ import annotations

import abc
import enum
import importlib
import json
import random
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any, ClassVar, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, core_schema

from chaosproxy.core import units
from chaosproxy.core.streams import StreamPlan

#: Delays longer than this are refused unless the fault says ``allow_long: true``.
MAX_DELAY = 600.0
#: No duration in a scenario may be longer than this (a phase, a ttl, a rate window, and a
#: delay even with ``allow_long``): beyond it, a value is a typo, not a test.
MAX_DURATION = 7 * 24 * 3600.0
#: Throttle rates below this (bytes per second) need ``allow_long: true``.
MIN_RATE = 1.0


class Stage(enum.StrEnum):
    """When a fault acts: as a connection is made (before any upstream connection exists),
    before the upstream is called, on the upstream's answer, or on each WebSocket message
    after an upgrade (``message``: the ``ws_*`` types, see :mod:`chaosproxy.core.websocket`).
    A type declares the stages it supports in ``stages``. ``connect`` faults are decided at
    a forward proxy's CONNECT, at a request that makes its own upstream connection (reverse
    mode, plain HTTP forward), or, for those that act on the client's TLS handshake
    (``handshake``), as a reverse-mode client starts it."""

    CONNECT = "connect"
    REQUEST = "request"
    RESPONSE = "response"
    MESSAGE = "message"


def _on(value: object) -> Stage:
    if isinstance(value, str) and value in (Stage.REQUEST, Stage.RESPONSE):
        return Stage(value)
    raise PydanticCustomError("enum", "Input should be 'request' or 'response'")


#: The ``on:`` field of fault types that act either before the upstream or on its answer.
On = Annotated[
    Stage,
    PlainValidator(_on),
    WithJsonSchema(
        {
            "enum": ["request", "response"],
            "type": "string",
            "description": "request: before the upstream is called; response: on its answer",
        }
    ),
]


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a body is paced: ``rate`` bytes/s in writes of at most ``piece`` bytes, after
    waiting ``first_byte`` once the headers are out. By ``t`` seconds after that wait at
    most ``rate * t`` bytes have gone (each write leaves when its last byte is due)."""

    rate: float
    piece: int
    first_byte: float = 0.0

    def due(self, sent: int) -> float:
        """Seconds after the start at which the first ``sent`` bytes may be out."""
        return sent / self.rate


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

    def shape(self, plan: StreamPlan) -> None:
        """Let the upstream's answer through with its body shaped as it streams: a late
        first byte, a pause or an end after N events or bytes (see faults/stream_cut.py)."""

    def cut(self, keep: float) -> None:
        """Send the answer's head with the full Content-Length of its body as sent, but only
        the first ``keep`` fraction of that body, then close (HTTP/2: reset the stream)."""

    def reset(self) -> None:
        """Reset the client connection with a TCP RST (HTTP/2: reset the stream)."""

    @property
    def upstream(self) -> tuple[str, int]:
        """The host and port the connection goes to (the CONNECT's, or the request's)."""

    def fail_connect(self, error: str) -> None:
        """Connect stage: answer as the proxy does when the upstream connection fails with
        ``error`` (a 502 naming it; a CONNECT is refused with it), the upstream untouched."""

    def fail_handshake(self, certificate: str | None) -> None:
        """Connect stage, handshake faults: the client's TLS handshake fails. ``None``: with
        a fatal alert from the proxy; ``"expired"`` / ``"self_signed"``: the proxy presents
        such a certificate, for the client's verification to refuse."""


#: Looks a request header up by name (any case): its first value, or None.
HeaderLookup = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a fault type needs from the engine, the scenario model and the addon."""

    stages: tuple[Stage, ...]
    needs_body: bool
    streams_body: bool
    passes_on: bool
    stateful: bool
    gates: bool
    handshake: bool = False


def _refuse_bool_or_text(value: Any, what: str) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError(
            "number_not_bool", "must be {what}, not true or false", {"what": what}
        )
    if isinstance(value, str):
        raise PydanticCustomError(
            "number_not_text", "must be {what}, not text: write it without quotes", {"what": what}
        )
    return value


def _whole_number(value: Any) -> Any:
    """Before an int field: a boolean or a string is not a number (the schema agrees)."""
    return _refuse_bool_or_text(value, "a whole number")


def _number(value: Any) -> Any:
    """Before a float field: a boolean or a string is not a number (the schema agrees)."""
    return _refuse_bool_or_text(value, "a number")


_NUMBER_CHECKS = {"int": _whole_number, "float": _number}


def _strict_scalars(schema: Any) -> Any:
    """``schema`` with its plain int and float fields refusing booleans and strings, and
    its bool fields refusing anything but true and false. Pydantic's lax mode takes
    ``"3"`` and ``true`` for 3 and 1, and ``"yes"`` or 1 for true; the JSON Schema does
    not, and ``validate`` must never accept what the schema refuses (DESIGN.md, "The
    schema and validate agree"). Pydantic's strict mode would also refuse ``3.0`` for an
    int (the schema accepts it) and lists for tuples, hence this walk. Fields that read
    text on purpose (durations, sizes, a ``then`` status) parse it before these checks,
    in their own before validators, and are left alone."""
    if isinstance(schema, list):
        return [_strict_scalars(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")  # a field named "type" holds a dict here: not a kind
    if not isinstance(kind, str):
        kind = None
    if kind == "function-before" and schema["function"].get("function") in (
        _NUMBER_CHECKS.values()
    ):
        return schema  # already walked (a model nested in another is walked twice)
    if kind in _NUMBER_CHECKS:
        return core_schema.no_info_before_validator_function(_NUMBER_CHECKS[kind], schema)
    if kind == "bool":
        return {**schema, "strict": True}
    return {
        key: value if key in ("metadata", "serialization") else _strict_scalars(value)
        for key, value in schema.items()
    }


class StrictScalars(BaseModel):
    """Base of the scenario models: booleans, numbers and text are told apart (see
    :func:`_strict_scalars`)."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _strict_scalars(handler(source))


class Fault(StrictScalars, abc.ABC):
    """Base of all fault types: the YAML parameters plus how they act on the wire.

    The class attributes below are the type's capabilities; a new type sets those that
    differ from the defaults, and nothing outside its module names the type.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str

    #: The stages this type can act in. With more than one, the fault's ``on`` field
    #: chooses (and :attr:`stage` returns it); with one, that is its stage.
    stages: ClassVar[tuple[Stage, ...]] = (Stage.REQUEST,)
    #: Needs the upstream's whole body buffered before it acts.
    needs_body: ClassVar[bool] = False
    #: Acts on the body as it streams through (no response stage after it): a rule has at
    #: most one such fault, and no response-stage fault besides it.
    streams_body: ClassVar[bool] = False
    #: Acting on the request, still sends it upstream through mitmproxy when done (its
    #: upstream connection can be opened while it waits).
    passes_on: ClassVar[bool] = False
    #: Keeps state across requests: the engine holds one :meth:`new_state` per rule (and
    #: phase), starts it afresh with the rule's counters, and hands it to :meth:`gate`.
    stateful: ClassVar[bool] = False
    #: Gates its rule: the rule fires only when :meth:`gate` says so, asked after every
    #: other selection step (a rate limit fires only over its limit). A rule has at most
    #: one gating fault, and a gate does not combine with ``per_request``.
    gates: ClassVar[bool] = False
    #: A ``connect`` fault that acts on the client's TLS handshake: decided at a CONNECT or
    #: as a reverse-mode client starts its handshake, never at a request.
    handshake: ClassVar[bool] = False

    @property
    def stage(self) -> Stage:
        """When this fault acts: the type's one stage (types with several override this)."""
        return self.stages[0]

    @classmethod
    def capabilities(cls) -> Capabilities:
        """The type's declared capabilities, in one record (for docs and checks)."""
        return Capabilities(
            cls.stages,
            cls.needs_body,
            cls.streams_body,
            cls.passes_on,
            cls.stateful,
            cls.gates,
            cls.handshake,
        )

    def new_state(self) -> Any:
        """Stateful types: a fresh state for one rule (a rate limit's windows)."""
        return None

    def gate(self, state: Any, header: HeaderLookup, now: float, *, dry_run: bool) -> int | None:
        """Gating types: None when the rule does not fire for this request (it goes on to
        later rules); else the seconds the client is told to wait (the wire's
        ``retry_after``). ``now`` is the engine's monotonic clock. With ``dry_run``
        (``explain``) the state is left exactly as it was."""
        raise TypeError(f"{type(self).__name__} does not gate its rule")

    def gate_declines(self) -> str:
        """Gating types: why the rule does not fire when :meth:`gate` says None (explain)."""
        return f"{self.describe()} lets it through"

    @abc.abstractmethod
    async def apply(self, wire: Wire) -> None:
        """Act on one flow."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short human summary for logs and stats, e.g. ``error 503``."""


F = TypeVar("F", bound=type[Fault])

#: YAML name -> fault class, filled by :func:`register` as fault modules are imported
#: (``chaosproxy.faults`` imports every module of the package; see :func:`fault_types`).
FAULT_TYPES: dict[str, type[Fault]] = {}

#: The packages whose modules define fault types, imported by :func:`fault_types`.
FAULT_PACKAGES: tuple[str, ...] = ("chaosproxy.faults",)


def fault_types() -> dict[str, type[Fault]]:
    """Every registered fault type, after importing the fault packages (once)."""
    for package in FAULT_PACKAGES:
        importlib.import_module(package)
    return FAULT_TYPES


def register(cls: F) -> F:
    """Register a fault class under the YAML name its ``type`` literal gives, after checking
    that the capabilities it declares hang together."""
    fields = cls.model_fields  # type: ignore[call-overload]
    name = fields["type"].default
    if not isinstance(name, str) or name in FAULT_TYPES:
        raise ValueError(f"fault class {cls.__name__} needs a unique default for 'type'")
    if not cls.stages or not set(cls.stages) <= set(Stage):
        raise ValueError(f"fault class {cls.__name__}: stages must name one or more Stage")
    if len(cls.stages) > 1 and "on" not in fields:
        raise ValueError(f"fault class {cls.__name__} has several stages: it needs an 'on' field")
    if cls.gates and cls.gate is Fault.gate:
        raise ValueError(f"fault class {cls.__name__} gates its rule: it must define gate()")
    if Stage.CONNECT in cls.stages and len(cls.stages) > 1:
        raise ValueError(f"fault class {cls.__name__}: a connect fault acts in no other stage")
    if cls.handshake and cls.stages != (Stage.CONNECT,):
        raise ValueError(f"fault class {cls.__name__}: handshake faults are connect faults")
    if cls.stateful and cls.new_state is Fault.new_state:
        raise ValueError(f"fault class {cls.__name__} is stateful: it must define new_state()")
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


def _above_zero(value: float) -> float:
    if value <= 0:
        raise ValueError("must be above 0 (leave it out for none)")
    return value


#: A duration that must be above 0 (``ttl``: 0 would mean nothing sensible).
PositiveDuration = Annotated[
    float,
    BeforeValidator(units.parse_duration),
    AfterValidator(_at_most_a_week),
    AfterValidator(_above_zero),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": units.DURATION_PATTERN},
            ],
            "description": "a duration above 0: 250ms, 1.5s, 2m, 1h, or seconds",
        }
    ),
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


#: Statuses whose answers carry no body (RFC 9110 6.4.1): a body sent with one of them
#: would be read by a keep-alive client as the start of the next answer.
BODYLESS = frozenset({204, 304})


def _final_status(value: int) -> int:
    if value < 200:
        raise ValueError(
            f"{value} is an interim status (1xx), which no fault may answer with: it "
            "announces another answer to come; use a status between 200 and 599"
        )
    return value


def has_body(status: int) -> bool:
    """Whether an answer with ``status`` may carry a body."""
    return status >= 200 and status not in BODYLESS


Status = Annotated[
    int,
    Range(100, 599, "must be an HTTP status between 200 and 599"),
    AfterValidator(_final_status),
    WithJsonSchema({"type": "integer", "minimum": 200, "maximum": 599}),
]


def _header_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return value


#: RFC 9110 5.1: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
#: RFC 9110 5.5: CR, LF and NUL are never allowed in a field value.
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")


def check_header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a header name: use letters, digits and !#$%&'*+-.^_`|~ "
            "(an RFC 9110 token; no spaces, colons or control characters)"
        )
    return value


def _field_value(value: str) -> str:
    found = _FORBIDDEN_IN_VALUE.search(value)
    if found:
        char = {"\r": "CR", "\n": "LF", "\x00": "NUL"}[found.group()]
        raise ValueError(f"a header value may not contain {char} (it would split the header)")
    return value


HEADER_NAME_PATTERN = _TOKEN_PATTERN
_NAME_SCHEMA = {"type": "string", "pattern": _TOKEN_PATTERN}
_VALUE_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": "^[^\r\n\u0000]*$"},
        {"type": ["number", "boolean"]},
    ]
}


def _header_names(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        check_header_name(name)
    return value


#: A header name, validated as an RFC 9110 token.
HeaderName = Annotated[str, AfterValidator(check_header_name), WithJsonSchema(_NAME_SCHEMA)]
#: A header value: text without CR, LF or NUL; numbers and booleans are written as text.
HeaderValue = Annotated[
    str,
    BeforeValidator(_header_value),
    AfterValidator(_field_value),
    WithJsonSchema(_VALUE_SCHEMA),
]
#: Header name -> value, both validated (a bad name is reported on the map, naming it).
HeaderMap = Annotated[
    dict[str, HeaderValue],
    AfterValidator(_header_names),
    WithJsonSchema(
        {"type": "object", "propertyNames": _NAME_SCHEMA, "additionalProperties": _VALUE_SCHEMA}
    ),
]


def check_delay(value: float, field: str, allow_long: bool) -> None:
    """Refuse an absurd delay unless the fault opted in with ``allow_long``."""
    if value > MAX_DELAY and not allow_long:
        raise ValueError(
            f"{field} of {units.format_duration(value)} is longer than "
            f"{units.format_duration(MAX_DELAY)}; set allow_long: true if you mean it"
        )


def error_body(status: int, rule: str, extra: Mapping[str, Any] | None = None) -> bytes:
    """The JSON body chaosproxy answers with when a scenario gives none: it names the rule
    (none for a 204 or 304, which carry no body)."""
    if not has_body(status):
        return b""
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
