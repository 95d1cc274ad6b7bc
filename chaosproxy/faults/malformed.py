"""``malformed``: the upstream's real answer, broken the way real answers break.

Every mode but ``truncate`` works on the body as the client will decode it (gzip, br, …
undone, then re-encoded the way it arrived), so a compressed answer is corrupted in what
the client reads, not in its compression. The JSON modes leave a body that is not JSON
as it is, and say so in the log.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from chaosproxy.core.fault import Fault, Range, ResponseView, Stage, Wire, register

logger = logging.getLogger("chaosproxy")

Mode = Literal["truncate", "invalid_json", "garbage", "empty", "wrong_content_type", "mutate_json"]
Action = Literal["drop", "null", "wrong_type"]
Fraction = Annotated[float, Range(0, 1, "must be between 0 and 1")]

_HTML_PAGE = """<!DOCTYPE html>
<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
<!-- injected by chaosproxy, rule {rule} -->
</body>
</html>
"""


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------- invalid_json


def _cut_mid_token(text: str, rng: random.Random) -> str:
    return text[: rng.randrange(1, len(text))] if len(text) > 1 else ""


def _stray_bracket(text: str, rng: random.Random) -> str:
    at = rng.randrange(0, len(text) + 1)
    return text[:at] + rng.choice("}]{[,:") + text[at:]


def _drop_quote(text: str, rng: random.Random) -> str:
    quotes = [i for i, c in enumerate(text) if c == '"']
    if not quotes:
        return text
    at = rng.choice(quotes)
    return text[:at] + text[at + 1 :]


def _trailing_comma(text: str, rng: random.Random) -> str:
    closers = [i for i, c in enumerate(text) if c in "}]"]
    if not closers:
        return text
    at = rng.choice(closers)
    return text[:at] + "," + text[at:]


_BREAKERS = (_cut_mid_token, _stray_bracket, _drop_quote, _trailing_comma)


def break_json(text: str, rng: random.Random) -> str:
    """JSON-looking text that no longer parses; the way it breaks is drawn from ``rng``."""
    for _ in range(20):
        broken = rng.choice(_BREAKERS)(text, rng)
        if broken.strip() and not _parses(broken):
            return broken
    return text + "}"  # never parses after a complete JSON value


# ----------------------------------------------------------------------- mutate_json


def _retyped(value: Any) -> Any:
    """number <-> string, object <-> list; booleans and null become strings."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        try:
            number = json.loads(value)
        except ValueError:
            return len(value)
        return number if isinstance(number, int | float) and not isinstance(number, bool) else 0
    if isinstance(value, dict):
        return list(value.values())
    return {str(i): item for i, item in enumerate(value)}


def _children(node: Any, part: str) -> list[tuple[Any, Any]]:
    """(container, key) pairs that ``part`` names in ``node``; ``*`` names all of them."""
    if isinstance(node, dict):
        if part == "*":
            return [(node, k) for k in list(node)]
        return [(node, part)] if part in node else []
    if isinstance(node, list):
        if part == "*":
            return [(node, i) for i in range(len(node))]
        if part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            return [(node, int(part) % len(node))]
    return []


def mutate(doc: Any, path: str, action: Action) -> int:
    """Apply ``action`` to every value ``path`` names in ``doc`` (in place); how many."""
    parts = path.split(".")
    targets: list[tuple[Any, Any]] = []
    nodes: list[Any] = [doc]
    for part in parts:
        targets = [pair for node in nodes for pair in _children(node, part)]
        nodes = [container[key] for container, key in targets]
    # Dropping list items by index shifts the rest: drop from the highest index down.
    by_index = sorted(targets, key=lambda t: t[1] if isinstance(t[1], int) else 0, reverse=True)
    for container, key in by_index:
        if action == "drop":
            del container[key]
        elif action == "null":
            container[key] = None
        else:
            container[key] = _retyped(container[key])
    return len(targets)


# ----------------------------------------------------------------------- the fault


@register
class Malformed(Fault):
    """Break the upstream's answer in the way ``mode`` names."""

    type: Literal["malformed"] = "malformed"
    mode: Mode
    keep: Fraction = Field(0.5, description="truncate: the fraction of the body sent")
    fields: tuple[str, ...] = Field(
        (), description="mutate_json: dotted paths (list indexes and * allowed), e.g. daily.0.temp"
    )
    action: Action = Field("drop", description="mutate_json: what to do to the fields")

    stages: ClassVar[tuple[Stage, ...]] = (Stage.RESPONSE,)
    needs_body: ClassVar[bool] = True

    @model_validator(mode="after")
    def _parameters_fit_mode(self) -> Malformed:
        given = self.model_fields_set
        if self.mode == "mutate_json":
            if not self.fields:
                raise ValueError("mode mutate_json needs fields: a list of dotted paths")
            if any(not f or any(not p for p in f.split(".")) for f in self.fields):
                raise ValueError("fields are dotted paths such as current.temp_c or daily.0")
        elif given & {"fields", "action"}:
            raise ValueError(f"fields and action go with mode mutate_json, not {self.mode}")
        if "keep" in given and self.mode != "truncate":
            raise ValueError(f"keep goes with mode truncate, not {self.mode}")
        if self.mode == "truncate" and self.keep >= 1:
            raise ValueError("keep must be below 1 (1 would send the whole body)")
        return self

    async def apply(self, wire: Wire) -> None:
        response = wire.response
        if response is None:
            return
        if self.mode == "truncate":
            wire.cut(self.keep)
        elif self.mode == "wrong_content_type":
            page = _HTML_PAGE.format(rule=wire.rule).encode()
            wire.respond(502, {"content-type": "text/html; charset=utf-8"}, page)
        elif self.mode == "empty":
            response.status = 200
            response.headers.pop("content-encoding", None)
            response.set_content(b"")
        elif self.mode == "garbage":
            response.set_content(wire.rng.randbytes(len(response.content)))
        else:
            self._break_json(wire, response)

    def _break_json(self, wire: Wire, response: ResponseView) -> None:
        body = response.content
        try:
            text = body.decode("utf-8")
            doc = json.loads(text)
        except ValueError:
            logger.warning(
                "rule %s: malformed %s left the answer as it is: its body (%d bytes) is not JSON",
                wire.rule,
                self.mode,
                len(body),
            )
            return
        if self.mode == "invalid_json":
            response.set_content(break_json(text, wire.rng).encode())
            return
        missing = [path for path in self.fields if mutate(doc, path, self.action) == 0]
        if missing:
            logger.warning(
                "rule %s: malformed mutate_json: the answer has no %s",
                wire.rule,
                ", ".join(missing),
            )
        response.set_content(json.dumps(doc).encode())

    def describe(self) -> str:
        if self.mode == "truncate":
            return f"malformed truncate (keep {self.keep:g})"
        if self.mode == "mutate_json":
            return f"malformed mutate_json {self.action} {', '.join(self.fields)}"
        return f"malformed {self.mode}"
