"""A Wire that records what a fault did, for unit tests of fault modules."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class FakeResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body: bytes = b'{"ok": true}'
    arrival: float = 2000.0

    @property
    def content(self) -> bytes:
        return self.body

    def set_content(self, body: bytes) -> None:
        self.body = body


@dataclass
class FakeWire:
    rule: str = "rule-1"
    arrival: float = 1000.0
    ended: bool = False
    retry_after: int | None = None
    client_leaves: bool = False
    seed: int = 0
    response: FakeResponse | None = None
    upstream: tuple[str, int] = ("api.test", 443)
    actions: list[tuple] = field(default_factory=list)
    _rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng

    async def sleep_until(self, when: float) -> bool:
        self.actions.append(("sleep_until", when))
        if self.client_leaves:
            self.ended = True
            return False
        return True

    async def hold(self) -> None:
        self.actions.append(("hold",))
        if self.client_leaves:
            self.ended = True

    def respond(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.actions.append(("respond", status, dict(headers), body))

    def close(self) -> None:
        self.ended = True
        self.actions.append(("close",))

    def pace(self, pacing: object) -> None:
        self.actions.append(("pace", pacing))

    def shape(self, plan: object) -> None:
        self.actions.append(("shape", plan))

    def cut(self, keep: float) -> None:
        self.ended = True
        self.actions.append(("cut", keep))

    def reset(self) -> None:
        self.ended = True
        self.actions.append(("reset",))

    def fail_connect(self, error: str) -> None:
        self.actions.append(("fail_connect", error))

    def fail_handshake(self, certificate: str | None) -> None:
        self.actions.append(("fail_handshake", certificate))
