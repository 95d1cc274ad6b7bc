"""``error``: answer with an error status instead of the upstream, or replace its answer."""

from __future__ import annotations

import json
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, JsonValue, model_validator

from chaosproxy.core.fault import (
    BODYLESS,
    Fault,
    HeaderMap,
    On,
    Stage,
    Status,
    Wire,
    error_body,
    has_body,
    register,
)


@register
class Error(Fault):
    """Answer ``status`` with ``headers`` and ``body`` (text) or ``json`` (any JSON value).

    With neither, the body is a small JSON error naming the rule. ``on: request`` (the
    default) never calls the upstream; ``on: response`` replaces the upstream's answer.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "not": {"required": ["body", "json"]},  # body or json, not both
            "if": {
                "properties": {"status": {"enum": [*sorted(BODYLESS)]}},
                "required": ["status"],
            },
            "then": {"not": {"anyOf": [{"required": ["body"]}, {"required": ["json"]}]}},
        }
    )

    type: Literal["error"] = "error"
    status: Status = 500
    headers: HeaderMap = Field(default_factory=dict)
    body: str | None = None
    json_: JsonValue | None = Field(default=None, alias="json")
    on: On = Stage.REQUEST

    stages: ClassVar[tuple[Stage, ...]] = (Stage.REQUEST, Stage.RESPONSE)

    @model_validator(mode="after")
    def _one_body(self) -> Error:
        if self.body is not None and self.json_ is not None:
            raise ValueError("give body or json, not both")
        if not has_body(self.status) and (self.body is not None or self.json_ is not None):
            raise ValueError(f"a {self.status} answer has no body: drop body and json")
        return self

    @property
    def stage(self) -> Stage:
        return self.on

    def payload(self, rule: str) -> tuple[dict[str, str], bytes]:
        """The headers and body to answer with."""
        headers = dict(self.headers)
        has_type = any(k.lower() == "content-type" for k in headers)
        if self.body is not None:
            body = self.body.encode()
            default_type = "text/plain; charset=utf-8"
        elif self.json_ is not None:
            body = json.dumps(self.json_).encode()
            default_type = "application/json"
        else:
            body = error_body(self.status, rule)
            default_type = "application/json"
        if not has_type and body:
            headers["content-type"] = default_type
        return headers, body

    async def apply(self, wire: Wire) -> None:
        headers, body = self.payload(wire.rule)
        wire.respond(self.status, headers, body)

    def describe(self) -> str:
        return f"error {self.status}" + (" on response" if self.on is Stage.RESPONSE else "")
