"""WebSocket message faults: their base class and the wire they act on. Pure Python.

A rule whose faults include a ``ws_*`` type fires for a WebSocket upgrade request (the
engine matches it only against upgrades, see :func:`is_upgrade`); its ``ws_*`` faults then
act on each message of that socket, in the directions they name, through a
:class:`MessageWire` (the addon's adapter to one message, ``proxy_addons/websocket.py``).
Their randomness is a stream per direction derived from the decision (seed, rule, match
number), drawn message after message: the same scenario, seed and message sequence give
the same drops, delays and corruptions.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable
from typing import ClassVar, Literal, Protocol

from pydantic import Field

from chaosproxy.core.fault import Fault, Stage, Wire

#: Which messages a fault acts on: those the client sends, those the server sends, or all.
Direction = Literal["client", "server", "both"]
DIRECTIONS: tuple[Direction, ...] = ("client", "server", "both")

#: What the engine tells when a ws_* rule meets a request that is not an upgrade.
NOT_AN_UPGRADE = "it is not a WebSocket upgrade (its ws_* faults act on WebSocket messages)"


def is_upgrade(header: Callable[[str], str | None]) -> bool:
    """Whether a request asks to upgrade to WebSocket (``Upgrade: websocket``, any case)."""
    value = header("upgrade")
    return value is not None and "websocket" in value.lower()


class SocketWire(Protocol):
    """One WebSocket a ws_* rule fired for, as a fault sees it."""

    rule: str
    """Name of the rule that fired."""

    @property
    def ended(self) -> bool:
        """True once the socket is closed (by a fault, or by either side)."""

    def close(self, code: int, reason: str) -> None:
        """Close the socket: both sides get a close frame with ``code`` and ``reason``."""


class MessageWire(SocketWire, Protocol):
    """One message of that socket, as a fault sees it."""

    from_client: bool
    """True for a message the client sent, False for one the server sent."""
    is_text: bool
    """A text message (its content is UTF-8), else binary."""
    dropped: bool
    """True once a fault dropped it (later faults of the rule leave it alone)."""

    @property
    def content(self) -> bytes:
        """The message as it stands (after earlier faults of the rule)."""

    @property
    def rng(self) -> random.Random:
        """This direction's random stream (the same for the same seed and messages)."""

    def seen(self, direction: Direction) -> int:
        """Messages of the socket in ``direction`` so far, this one included."""

    def replace(self, content: bytes) -> None:
        """Send ``content`` instead (for a text message: valid UTF-8)."""

    def drop(self) -> None:
        """Do not pass the message on."""

    def delay(self, seconds: float) -> None:
        """Pass the message on ``seconds`` from now; later messages in its direction wait
        behind it (order is kept), the other direction does not wait."""


class MessageFault(Fault):
    """Base of the ``ws_*`` types: act on the messages of an upgraded WebSocket."""

    direction: Direction = Field(
        "both",
        description="client: messages the client sends; server: messages the server sends; both",
    )

    stages: ClassVar[tuple[Stage, ...]] = (Stage.MESSAGE,)
    #: Acts on a message an earlier fault of the rule dropped too (it counts messages, as
    #: ``ws_close`` does); the others leave a dropped message alone.
    sees_dropped: ClassVar[bool] = False

    def applies_to(self, from_client: bool) -> bool:
        """Whether this fault acts on a message from that side."""
        return self.direction == "both" or (self.direction == "client") == from_client

    async def apply(self, wire: Wire) -> None:
        """Nothing on the upgrade request itself: the messages are :meth:`on_message`'s."""

    @abc.abstractmethod
    def on_message(self, wire: MessageWire) -> None:
        """Act on one message in this fault's direction."""

    def timer(self) -> float | None:
        """Seconds after the upgrade at which :meth:`on_timer` acts; None: never."""
        return None

    def on_timer(self, wire: SocketWire) -> None:
        """Act on the socket when :meth:`timer` says (the types that set one define it)."""

    def _side(self) -> str:
        return "" if self.direction == "both" else f" ({self.direction} messages)"
