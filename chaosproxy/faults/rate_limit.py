"""``rate_limit``: let ``limit`` requests through per ``per`` window, answer the rest 429."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from chaosproxy.core.fault import (
    HEADER_NAME_PATTERN,
    JSON_HEADERS,
    Duration,
    Fault,
    HeaderLookup,
    Range,
    Status,
    Wire,
    check_header_name,
    error_body,
    register,
)
from chaosproxy.core.units import format_duration

Limit = Annotated[int, Range(1, None, "must be a whole number >= 1")]


def _key_spec(value: str) -> str:
    if not value.startswith("header:") or not value[len("header:") :].strip():
        raise ValueError("key must be header:NAME, e.g. header:X-Api-Key")
    check_header_name(value[len("header:") :].strip())
    return value


class Window:
    """One fixed window: when it started and how many requests it admitted."""

    __slots__ = ("count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0


@register
class RateLimit(Fault):
    """A fixed window of ``per`` that starts with the first request the rule sees (per key).

    Under the limit the rule does not fire and later rules are tried; over it, ``status``
    (429) with ``Retry-After`` = whole seconds until the window rolls, rounded up. The
    answers it gives do not count towards the limit.
    """

    type: Literal["rate_limit"] = "rate_limit"
    limit: Limit
    per: Duration = 1.0
    status: Status = 429
    key: (
        Annotated[
            str,
            AfterValidator(_key_spec),
            WithJsonSchema({"type": "string", "pattern": "^header:\\s*" + HEADER_NAME_PATTERN[1:]}),
        ]
        | None
    ) = Field(
        None, description="header:NAME: one window per value of that header (e.g. an API key)"
    )

    stateful: ClassVar[bool] = True
    gates: ClassVar[bool] = True

    @model_validator(mode="after")
    def _positive_window(self) -> RateLimit:
        if self.per <= 0:
            raise ValueError("per must be above 0")
        return self

    @property
    def header(self) -> str | None:
        return self.key[len("header:") :].strip() if self.key else None

    def new_state(self) -> dict[str, Window]:
        """One window per key value ("" without a key)."""
        return {}

    def gate(
        self, state: dict[str, Window], header: HeaderLookup, now: float, *, dry_run: bool
    ) -> int | None:
        """Count one request; None if it is under the limit, else the Retry-After seconds.
        With ``dry_run``, count nothing and keep the windows as they are."""
        name = self.header
        key = (header(name) or "") if name else ""
        window = state.get(key)
        if window is None or now - window.start >= self.per:
            window = Window(now)
            if not dry_run:
                state[key] = window
        if window.count < self.limit:
            if not dry_run:
                window.count += 1
            return None
        return max(1, math.ceil(window.start + self.per - now))

    def gate_declines(self) -> str:
        return "is under its rate limit"

    async def apply(self, wire: Wire) -> None:
        retry_after = wire.retry_after if wire.retry_after is not None else math.ceil(self.per)
        headers = dict(JSON_HEADERS)
        headers["retry-after"] = str(retry_after)
        wire.respond(
            self.status, headers, error_body(self.status, wire.rule, {"retry_after": retry_after})
        )

    def describe(self) -> str:
        per = format_duration(self.per)
        by = f" per {self.key}" if self.key else ""
        return f"rate_limit {self.limit}/{per}{by}"
