"""``ws_corrupt``: WebSocket messages arrive with some characters or bytes changed."""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import Field

from chaosproxy.core.fault import Range, register
from chaosproxy.core.websocket import MessageFault, MessageWire

#: What a text message's changed characters become: printable ASCII, so the message stays
#: valid UTF-8 (a peer must fail the socket on invalid text, RFC 6455 8.1).
_TEXT = string.ascii_letters + string.digits + string.punctuation


@register
class WsCorrupt(MessageFault):
    """Change ``changes`` random places of a message (with ``probability``), in the
    direction given. A text message gets characters replaced by other printable ASCII
    characters, so it stays valid UTF-8 but a JSON message usually no longer parses or
    says something else; a binary message gets bytes XORed with a random non-zero value.
    The length is kept; an empty message passes unchanged."""

    type: Literal["ws_corrupt"] = "ws_corrupt"
    probability: Annotated[float, Range(0, 1, "must be between 0 and 1")] = Field(
        1.0, description="chance that each message is corrupted"
    )
    changes: Annotated[int, Range(1, None, "must be at least 1")] = Field(
        1, description="how many characters (text) or bytes (binary) are changed"
    )

    def on_message(self, wire: MessageWire) -> None:
        rng = wire.rng
        if self.probability < 1 and rng.random() >= self.probability:
            return
        content = wire.content
        if not content:
            return
        if wire.is_text:
            chars = list(content.decode("utf-8", "replace"))
            for i in rng.sample(range(len(chars)), min(self.changes, len(chars))):
                chars[i] = rng.choice([c for c in _TEXT if c != chars[i]])
            wire.replace("".join(chars).encode())
        else:
            data = bytearray(content)
            for i in rng.sample(range(len(data)), min(self.changes, len(data))):
                data[i] ^= rng.randint(1, 255)
            wire.replace(bytes(data))

    def describe(self) -> str:
        what = "change" if self.changes == 1 else "changes"
        chance = f" {self.probability:.0%}" if self.probability < 1 else ""
        return f"ws_corrupt{chance} {self.changes} {what}{self._side()}"
