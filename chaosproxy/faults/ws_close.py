"""``ws_close``: the proxy closes a WebSocket with a close code, after N messages or T seconds."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from chaosproxy.core.fault import Duration, Range, register
from chaosproxy.core.units import format_duration
from chaosproxy.core.websocket import MessageFault, MessageWire, SocketWire

#: RFC 6455 7.4: codes an endpoint may send (1004-1006 and 1015 are never sent, 1016-2999
#: are reserved for the protocol, 3000-4999 are for libraries and applications).
_SENDABLE = (*range(1000, 1004), *range(1007, 1015), *range(3000, 5000))
#: A close frame's payload is at most 125 bytes: the 2-byte code and the reason.
MAX_REASON_BYTES = 123


def _sendable(code: int) -> int:
    if code not in _SENDABLE:
        raise ValueError(
            f"{code} is not a close code an endpoint may send: use 1000-1003, 1007-1014 "
            "or 3000-4999 (RFC 6455 7.4)"
        )
    return code


CloseCode = Annotated[
    int,
    AfterValidator(_sendable),
    WithJsonSchema(
        {
            "type": "integer",
            "anyOf": [
                {"minimum": 1000, "maximum": 1003},
                {"minimum": 1007, "maximum": 1014},
                {"minimum": 3000, "maximum": 4999},
            ],
        }
    ),
]


@register
class WsClose(MessageFault):
    """Close an upgraded WebSocket: both sides get a close frame with ``code`` and
    ``reason``, as if the other side had closed. ``after_messages``: right after the Nth
    message in the direction given has been passed on; ``after``: that long after the
    upgrade; with both, whichever comes first."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["after_messages"]}, {"required": ["after"]}]}
    )

    type: Literal["ws_close"] = "ws_close"
    code: CloseCode = Field(
        1011, description="the close code both sides get (1011: internal error)"
    )
    reason: str = Field(
        "", max_length=MAX_REASON_BYTES, description="the close reason (at most 123 bytes)"
    )
    after_messages: Annotated[int, Range(1, None, "must be at least 1")] | None = Field(
        None, description="close right after this many messages in the direction given"
    )
    after: Duration | None = Field(None, description="close this long after the upgrade")

    sees_dropped: ClassVar[bool] = True

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if len(value.encode()) > MAX_REASON_BYTES:
            raise ValueError(f"must be at most {MAX_REASON_BYTES} bytes in UTF-8")
        return value

    @model_validator(mode="after")
    def _when(self) -> WsClose:
        if self.after_messages is None and self.after is None:
            raise ValueError("give after_messages (a count), after (a duration), or both")
        return self

    def on_message(self, wire: MessageWire) -> None:
        if self.after_messages is not None and wire.seen(self.direction) >= self.after_messages:
            wire.close(self.code, self.reason)

    def timer(self) -> float | None:
        return self.after

    def on_timer(self, wire: SocketWire) -> None:
        wire.close(self.code, self.reason)

    def describe(self) -> str:
        when = []
        if self.after_messages is not None:
            n = self.after_messages
            when.append(f"{n} message{'s' if n != 1 else ''}{self._side()}")
        if self.after is not None:
            when.append(format_duration(self.after))
        return f"ws_close {self.code} after {' or '.join(when)}"
