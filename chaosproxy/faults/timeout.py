"""``timeout``: nothing comes back, until the client gives up or ``after`` has passed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, PlainValidator, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from chaosproxy.core.fault import (
    JSON_HEADERS,
    Duration,
    Fault,
    Wire,
    check_delay,
    error_body,
    register,
)
from chaosproxy.core.units import format_duration


def _then(value: object) -> str | int:
    """``close``, ``reset``, or a status written ``504`` or ``"504"``."""
    if value in ("close", "reset"):
        return str(value)
    status: object = value
    if isinstance(value, str) and value.strip().isdigit():
        status = int(value)
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        if status < 200:
            raise PydanticCustomError(
                "then",
                "{value} is an interim status (1xx), which no fault may answer with: it "
                "announces another answer to come; use a status between 200 and 599",
                {"value": status},
            )
        return status
    raise PydanticCustomError(
        "then",
        "must be close, reset or an HTTP status (200-599), got {value}",
        {"value": repr(value)},
    )


Then = Annotated[
    str | int,
    PlainValidator(_then),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": ["close", "reset"]},
                {"type": "integer", "minimum": 200, "maximum": 599},
                {"type": "string", "pattern": "^[2-5][0-9][0-9]$"},
            ],
            "description": "what happens after `after`: close, reset, or an HTTP status",
        }
    ),
]


@register
class Timeout(Fault):
    """Hold the request: with no ``after``, until the client gives up; else for ``after``,
    then close the connection, reset it, or answer with the status ``then`` names."""

    model_config = ConfigDict(json_schema_extra={"dependentRequired": {"then": ["after"]}})

    type: Literal["timeout"] = "timeout"
    after: Duration | None = None
    then: Then | None = None
    allow_long: bool = False

    @model_validator(mode="after")
    def _check(self) -> Timeout:
        if self.after is None and self.then is not None:
            raise ValueError(
                "then needs after: without after the request is held until the client gives up"
            )
        if self.after is not None:
            check_delay(self.after, "after", self.allow_long)
        return self

    async def apply(self, wire: Wire) -> None:
        if self.after is None:
            await wire.hold()
            if not wire.ended:  # the proxy is stopping: let the client go
                wire.close()
            return
        if not await wire.sleep_until(wire.arrival + self.after):
            return
        then = self.then if self.then is not None else "close"
        if then == "close":
            wire.close()
        elif then == "reset":
            wire.reset()
        else:
            assert isinstance(then, int)
            body = error_body(then, wire.rule)
            wire.respond(then, JSON_HEADERS if body else {}, body)

    def describe(self) -> str:
        if self.after is None:
            return "timeout (hold)"
        then = self.then if self.then is not None else "close"
        return f"timeout {format_duration(self.after)} then {then}"
