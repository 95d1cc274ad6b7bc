"""Scenario files: YAML -> typed, immutable model, with located errors and a JSON Schema.

``load_file``, ``load_text`` and ``load_data`` either return a :class:`Scenario` or raise
:class:`ScenarioError`, whose lines read ``PATH:LINE:COL: field.path: message``, all
problems at once. The model is the contract of ``DESIGN.md``; the engine gives it meaning.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from chaosproxy.core import grpc_protocol, yamlsource
from chaosproxy.core.fault import (
    HEADER_NAME_PATTERN,
    Duration,
    Fault,
    HeaderName,
    PositiveDuration,
    Range,
    Stage,
    StrictScalars,
    check_header_name,
    fault_types,
)
from chaosproxy.core.regex import RegexError, compile_re2
from chaosproxy.core.yamlsource import Document, Problem, format_path
from chaosproxy.core.yamlsource import Path as DocPath

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_LINE = "# yaml-language-server: $schema=schema.json"
_METHOD = re.compile(r"^[A-Za-z][A-Za-z_-]*$")


# --------------------------------------------------------------------------- values


def _match_text(value: object) -> object:
    """Match values are strings; numbers and booleans from JSON become their JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if value is None or isinstance(value, dict | list):
        raise PydanticCustomError(
            "match_text", "must be a string (a glob, or re:REGEX); quote it in YAML"
        )
    return value


def _check_pattern(value: str) -> str:
    if value.startswith("re:"):
        try:
            compile_re2(value[3:])
        except RegexError as exc:
            what = "invalid regular expression" if exc.invalid else "regular expression"
            raise ValueError(f"{what} {value[3:]!r}: {exc}") from None
    return value


Pattern = Annotated[
    str,
    BeforeValidator(_match_text),
    AfterValidator(_check_pattern),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": ["number", "boolean"]}],
            "description": "a glob (* also crosses /), or re:REGEX for a regular expression; "
            "a number or boolean matches its text",
        }
    ),
]


GrpcMethod = Annotated[
    str,
    AfterValidator(grpc_protocol.check_method_pattern),
    AfterValidator(_check_pattern),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": grpc_protocol.METHOD_PATTERN,
            "description": "a glob on the gRPC call's package.Service/Method (its :path "
            "without the leading /), or re:REGEX",
        }
    ),
]


_INDEX = re.compile(r"^-?[0-9]+$")


def _json_path(value: str) -> str:
    """A dotted path into a JSON body: keys, or array indexes written in ASCII digits."""
    for part in value.split("."):
        if not part:
            raise ValueError(
                f"JSON path {value!r} has an empty part: write keys separated by single dots, "
                "e.g. items.0.id"
            )
        if not _INDEX.match(part) and part.lstrip("-").isdigit():
            raise ValueError(
                f"JSON path {value!r}: {part!r} is not an index: array indexes are ASCII "
                "digits (0-9)"
            )
    return value


_JSON_PATH_PATTERN = "^[^.]+(\\.[^.]+)*$"
JsonPath = Annotated[
    str,
    AfterValidator(_json_path),
    WithJsonSchema({"type": "string", "pattern": _JSON_PATH_PATTERN}),
]


def _method(value: object) -> object:
    if isinstance(value, str):
        if not _METHOD.match(value):
            raise PydanticCustomError(
                "method", "{value} is not an HTTP method", {"value": repr(value)}
            )
        return value.upper()
    return value


Method = Annotated[
    str, BeforeValidator(_method), WithJsonSchema({"type": "string", "pattern": _METHOD.pattern})
]


def _as_tuple(value: object) -> object:
    return (value,) if isinstance(value, str | dict) else value


Probability = Annotated[float, Range(0, 1, "must be between 0 and 1")]
Count = Annotated[int, Range(0, None, "must be a whole number >= 0")]
Positive = Annotated[int, Range(1, None, "must be a whole number >= 1")]


@dataclass(frozen=True)
class _keys_schema:  # noqa: N801 - used as an annotation, like pydantic's own markers
    """JSON Schema for a mapping whose keys must match ``pattern`` (pydantic leaves keys out)."""

    pattern: str

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        out["propertyNames"] = {"pattern": self.pattern}
        return out


class _Model(StrictScalars):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- model


def _fault_union() -> Any:
    types = fault_types()
    classes = tuple(types[name] for name in sorted(types))
    return Annotated[typing.Union[classes], Field(discriminator="type")]  # noqa: UP007


if typing.TYPE_CHECKING:
    FaultSpec = Fault
else:
    FaultSpec = _fault_union()


class Match(_Model):
    """Conditions on a request; every one given must hold. No conditions: every request."""

    host: Pattern | None = Field(
        None, description="glob on the upstream host (or its NAME with several upstreams)"
    )
    path: Pattern | None = Field(None, description="glob on the decoded path, query excluded")
    method: Annotated[
        tuple[Method, ...],
        BeforeValidator(_as_tuple, json_schema_input_type=Method | list[Method]),
        Field(description="one method or a list"),
    ] = ()
    headers: Annotated[dict[HeaderName, Pattern], _keys_schema(HEADER_NAME_PATTERN)] = Field(
        default_factory=dict, description="header name (any case) -> glob on its value"
    )
    query: dict[str, Pattern] = Field(
        default_factory=dict, description="query parameter -> glob on its value"
    )
    body: Pattern | None = Field(None, description="glob on the request body as text")
    json_: Annotated[dict[JsonPath, Pattern], _keys_schema(_JSON_PATH_PATTERN)] = Field(
        default_factory=dict,
        alias="json",
        description="dotted path into a JSON request body -> glob on the value's text",
    )
    grpc: GrpcMethod | None = Field(
        None,
        description="a gRPC call (content-type application/grpc*) whose package.Service/Method "
        "matches this glob",
    )

    @property
    def empty(self) -> bool:
        return not (
            self.host
            or self.path
            or self.method
            or self.headers
            or self.query
            or self.body is not None
            or self.json_
            or self.grpc is not None
        )


def _sticky_spec(value: str) -> str:
    kind, _, name = value.partition(":")
    if kind not in ("header", "query") or not name.strip():
        raise PydanticCustomError(
            "sticky",
            "{value} is not a key: write header:NAME or query:NAME, e.g. header:X-User-Id",
            {"value": repr(value)},
        )
    if kind == "header":
        check_header_name(name.strip())
    return value


def _printable(value: str) -> str:
    """Names reach logs, the terminal and X-Chaos-Rule: printable text only."""
    if not value.isprintable():
        raise ValueError(
            f"{value!r} has control characters; a name is printable text (they would "
            "reach the terminal and headers as they are)"
        )
    return value


#: A rule, phase or scenario name.
Name = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_printable),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$",
        }
    ),
]


StickyKey = Annotated[
    str,
    AfterValidator(_sticky_spec),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^(header|query):.+$",
            "description": "header:NAME or query:NAME: the probability applies per value "
            "of that key (e.g. per user), not per request",
        }
    ),
]


class PerRequest(_Model):
    """Fail the first ``times`` attempts of each distinct request, then let it through."""

    times: Positive = Field(
        description="attempts of each distinct request that fail (identity: the "
        "Idempotency-Key header, else method + URL + body hash)"
    )


class Rule(_Model):
    """When to inject (match, counters, probability) and what (one fault or a list)."""

    model_config = ConfigDict(
        json_schema_extra={  # per_request counts attempts per request: no skip, no every
            "not": {
                "anyOf": [
                    {"required": ["per_request", "skip"]},
                    {"required": ["per_request", "every"]},
                ]
            }
        }
    )

    name: Name | None = Field(
        None, description='default "<fault type>-<n>", n its position counting from 1'
    )
    match: Match = Field(default_factory=Match)
    probability: Probability = 1.0
    skip: Count = Field(0, description="let the first N matching requests through untouched")
    every: Positive | None = Field(None, description="then inject into every Nth match")
    times: Count | None = Field(None, description="inject at most N times in all")
    per_request: PerRequest | None = Field(
        None, description="{times: N}: fail the first N attempts of each distinct request"
    )
    sticky: StickyKey | None = Field(
        None, description="header:NAME: the probability applies per value of that key"
    )
    fault: Annotated[
        tuple[FaultSpec, ...],
        BeforeValidator(_as_tuple, json_schema_input_type=FaultSpec | list[FaultSpec]),
        Field(min_length=1, description="one fault, or a list applied in order"),
    ]

    @property
    def sticky_key(self) -> tuple[str, str] | None:
        """(``header`` or ``query``, NAME) when the rule is sticky."""
        if self.sticky is None:
            return None
        kind, _, name = self.sticky.partition(":")
        return kind, name.strip()

    @property
    def label(self) -> str:
        """The rule's name; always set once a scenario is loaded."""
        assert self.name is not None
        return self.name

    def describe(self) -> str:
        return " + ".join(f.describe() for f in self.fault)


class Phase(_Model):
    """A stretch of a timeline with its own rules (none: calm)."""

    name: Name
    duration: Duration | None = Field(
        None, description="required, except for the last phase when loop is false"
    )
    rules: tuple[Rule, ...] = ()


class Scenario(_Model):
    """A scenario: rules applied to every request, or phases each with their own rules."""

    model_config = ConfigDict(
        json_schema_extra={
            "not": {"required": ["rules", "phases"]},  # rules or phases, not both
            "if": {"properties": {"loop": {"const": True}}, "required": ["loop"]},
            "then": {"required": ["phases"]},  # loop only applies to phases
        }
    )

    version: Literal[1] = 1
    name: Name | None = None
    description: str = ""
    seed: int | None = Field(None, description="same seed, same decisions")
    annotate: bool = Field(False, description="add X-Chaos-Rule to answers a rule touched")
    ttl: PositiveDuration | None = Field(None, description="revert to passthrough after this long")
    request_faults: bool = Field(
        False,
        description="a request may ask for its own faults with an X-Chaos-Fault header "
        "(loopback clients, or with X-Chaos-Token: the admin token): a test aid",
    )
    rules: tuple[Rule, ...] = ()
    phases: tuple[Phase, ...] = ()
    loop: bool = Field(False, description="after the last phase: start over (true) or stay")

    @property
    def label(self) -> str:
        assert self.name is not None
        return self.name

    def all_rules(self) -> Iterator[tuple[Phase | None, Rule]]:
        if self.phases:
            for phase in self.phases:
                for rule in phase.rules:
                    yield phase, rule
        else:
            for rule in self.rules:
                yield None, rule


PASSTHROUGH = Scenario(name="passthrough", description="No faults: every request untouched.")


# --------------------------------------------------------------------------- errors


class ScenarioError(Exception):
    """A scenario that cannot be used; ``str()`` is one located line per problem."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.col or 0))
        super().__init__("\n".join(p.format(source) for p in self.problems))

    @property
    def lines(self) -> list[str]:
        return [p.format(self.source) for p in self.problems]

    def __reduce__(self) -> tuple[Any, ...]:  # pickled across processes (off-loop loading)
        return (ScenarioError, (self.source, self.problems))


_DISCRIMINATORS = ("type", "kind")


def _walk(data: Any, loc: Sequence[str | int]) -> tuple[DocPath, Any, bool]:
    """Map a pydantic error location onto the document: drop union tags and the index of
    a single fault written without a list. Returns (path, value there, found)."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict):
            if isinstance(part, str) and part in node:
                path.append(part)
                node = node[part]
                continue
            if any(node.get(d) == part for d in _DISCRIMINATORS):
                continue  # a discriminated union's tag
            if part == 0:
                continue  # `fault: {...}` validated as a one-element list
            path.append(part)
            return tuple(path), None, False
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
            continue
        if isinstance(part, str) and not last and not isinstance(node, dict | list):
            continue  # a union branch name (e.g. "function-after[...]" or "str")
        path.append(part)
        return tuple(path), None, False
    return tuple(path), node, True


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        ann = stack.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found.append(ann)
            continue
        stack.extend(typing.get_args(ann))
    return found


def _model_at(data: Any, path: DocPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` of ``data``."""
    model: type[BaseModel] = Scenario
    node = data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields or not isinstance(node, dict):
            return None
        node = node.get(part)
        candidates = _models_in(fields[part].annotation)
        if isinstance(node, list):
            node_for_pick = node[0] if node else None
        else:
            node_for_pick = node
        model_next = _pick(candidates, node_for_pick)
        if model_next is None:
            return None
        model = model_next
    return model


def _pick(candidates: list[type[BaseModel]], node: Any) -> type[BaseModel] | None:
    if len(candidates) == 1:
        return candidates[0]
    if isinstance(node, dict):
        for cls in candidates:
            for d in _DISCRIMINATORS:
                field = cls.model_fields.get(d)
                if field is not None and node.get(d) in typing.get_args(field.annotation):
                    return cls
    return None


def _tags_at(data: Any, path: DocPath, disc: str) -> list[str]:
    """The valid discriminator values of the union validating the mapping at ``path``."""
    field_path = path[:-1] if path and isinstance(path[-1], int) else path
    parent = _model_at(data, field_path[:-1]) if field_path else None
    if parent is None:
        return sorted(fault_types()) if disc == "type" else []
    fields = {(f.alias or n): f for n, f in parent.model_fields.items()}
    field = fields.get(str(field_path[-1]))
    if field is None:
        return []
    tags: list[str] = []
    for cls in _models_in(field.annotation):
        tag_field = cls.model_fields.get(disc)
        if tag_field is not None:
            tags.extend(str(t) for t in typing.get_args(tag_field.annotation))
    return sorted(tags)


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Any, data: Any, path: DocPath) -> tuple[str, DocPath, bool]:
    """A user-facing message for one pydantic error; may adjust the path it points at."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "extra_forbidden":
        key = str(path[-1])
        model = _model_at(data, path[:-1])
        valid = _keys_of(model) if model else []
        listed = f"; valid keys: {', '.join(valid)}" if valid else ""
        return f"unknown key {key!r}{_suggest(key, valid)}{listed}", path, True
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        disc = ctx.get("discriminator", "'type'").strip("'")
        tags = _tags_at(data, path, disc)
        what = "fault type" if disc == "type" else "distribution kind"
        if kind == "union_tag_not_found":
            return f"missing {disc!r}: say which {what}, one of {', '.join(tags)}", path, False
        tag = str(ctx.get("tag"))
        return (
            f"unknown {what} {tag!r}{_suggest(tag, tags)}; valid: {', '.join(tags)}",
            (*path, disc),
            False,
        )
    if kind == "missing":
        return f"missing required key {str(path[-1])!r}", path[:-1], False
    if kind == "literal_error":
        return (
            f"must be {ctx.get('expected', 'one of the listed values')}, got {_shown(value)}",
            path,
            False,
        )
    text = err["msg"]
    if kind == "value_error":
        text = text.removeprefix("Value error, ")
        return text, path, False
    custom = kind in ("range", "match_text", "regex", "method", "then", "sticky", "grpc_code")
    text = text.replace("Input should be", "must be").replace("input should be", "must be")
    if kind in ("model_type", "dict_type") or kind.endswith("dict_type"):
        text = "must be a mapping (key: value)"
    elif kind in ("tuple_type", "list_type"):
        text = "must be a list"
    elif kind in ("string_type",):
        text = "must be a string"
    elif kind == "bool_type":
        text = "must be true or false"
    elif kind == "int_from_float":  # pydantic's text says 'got' already
        text = "must be a whole number"
    if not custom or kind == "range":
        if not isinstance(value, dict | list) or kind in ("string_type",):
            text += f", got {_shown(value)}"
    return text, path, False


def _problems(exc: ValidationError, doc: Document) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out: list[Problem] = [p for _, p in doc.problems]
    refused = [path for path, _ in doc.problems]
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        on_key = bool(loc) and loc[-1] == "[key]"  # a mapping's key was refused
        path, _, _ = _walk(doc.data, loc[:-1] if on_key else loc)
        if any(path[: len(r)] == r for r in refused):
            continue  # already reported as it was read
        message, path, at_key = _message(err, doc.data, path)
        at_key = at_key or on_key
        field = format_path(path)
        if (field, message) in seen:
            continue
        seen.add((field, message))
        pos = doc.position(path, key=at_key)
        out.append(Problem(field, message, *(pos or (None, None))))
    return out


# --------------------------------------------------------------------------- checks


def _default_names(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    return tuple(
        rule if rule.name else rule.model_copy(update={"name": f"{rule.fault[0].type}-{i}"})
        for i, rule in enumerate(rules, start=1)
    )


#: Match conditions a connect-time rule cannot use: they need a request, which it precedes.
_REQUEST_CONDITIONS = ("path", "method", "headers", "query", "body", "json", "grpc")


def _check_connect_rule(
    rule: Rule, fault: str, at: DocPath, add: typing.Callable[[DocPath, str], None]
) -> None:
    """A connect-time fault acts before any request is read: alone in its rule, which
    matches on the host only and counts connections, not request identities."""
    if len(rule.fault) > 1:
        add(
            (*at, "fault"),
            f"{fault} acts before any request is read, so it is its rule's only fault; "
            "put the others in another rule",
        )
    used = rule.match.model_dump(by_alias=True, exclude_defaults=True)
    for condition in _REQUEST_CONDITIONS:
        if condition in used:
            add(
                (*at, "match", condition),
                f"{fault} is decided before any request is read: match on host only",
            )
    for other in ("per_request", "sticky"):
        if getattr(rule, other) is not None:
            add((*at, other), f"{other} needs a request; {fault} acts before one")


def _finish(scenario: Scenario, doc: Document, default_name: str) -> Scenario:
    """Checks that span fields, and the defaults that depend on position."""
    problems: list[Problem] = []

    def add(path: DocPath, message: str) -> None:
        problems.append(Problem(format_path(path), message, *(doc.position(path) or (None, None))))

    if {"rules", "phases"} <= scenario.model_fields_set:
        add(("phases",), "a scenario has either rules or phases, not both")
    if scenario.loop and not scenario.phases:
        add(("loop",), "loop only applies to phases")

    def check_rules(rules: tuple[Rule, ...], base: DocPath) -> tuple[Rule, ...]:
        named = _default_names(rules)
        first: dict[str, int] = {}
        for i, rule in enumerate(named):
            if rule.label in first:
                add(
                    (*base, i, "name"),
                    f"duplicate rule name {rule.label!r} (also rules[{first[rule.label]}])",
                )
            first.setdefault(rule.label, i)
            gates = [f.type for f in rule.fault if f.gates]
            if len(gates) > 1:
                kinds = " or ".join(dict.fromkeys(gates))
                add((*base, i, "fault"), f"a rule has at most one {kinds}")
            streams = [f.type for f in rule.fault if f.streams_body]
            after = [f.describe() for f in rule.fault if f.stage is Stage.RESPONSE]
            if len(set(streams)) > 1:
                add(
                    (*base, i, "fault"),
                    f"{' and '.join(dict.fromkeys(streams))} both stream the body, and a rule "
                    "has at most one fault that does; put them in separate rules",
                )
            elif len(streams) > 1:
                add((*base, i, "fault"), f"a rule has at most one {streams[0]}")
            elif streams and after:
                add(
                    (*base, i, "fault"),
                    f"{streams[0]} streams the body as it arrives, so it cannot be combined "
                    f"with faults that act on the whole answer ({', '.join(after)}); "
                    "put them in separate rules",
                )
            connect = [f.type for f in rule.fault if Stage.CONNECT in f.stages]
            if connect:
                _check_connect_rule(rule, connect[0], (*base, i), add)
            if rule.per_request is not None:
                for other in ("skip", "every"):
                    if other in rule.model_fields_set:
                        add(
                            (*base, i, other),
                            f"{other} does not combine with per_request (which counts "
                            "attempts per distinct request)",
                        )
                if gates:
                    add(
                        (*base, i, "per_request"),
                        f"per_request does not combine with a {gates[0]} fault",
                    )
        return named

    rules = check_rules(scenario.rules, ("rules",))
    phases: list[Phase] = []
    names: dict[str, int] = {}
    for i, phase in enumerate(scenario.phases):
        if phase.name in names:
            add(("phases", i, "name"), f"duplicate phase name {phase.name!r}")
        names.setdefault(phase.name, i)
        last = i == len(scenario.phases) - 1
        if phase.duration is None and not (last and not scenario.loop):
            why = "with loop: true every phase" if last else "every phase but the last"
            add(("phases", i), f"missing duration: {why} needs one")
        elif phase.duration is not None and phase.duration <= 0:
            add(("phases", i, "duration"), "must be above 0")
        phases.append(
            phase.model_copy(update={"rules": check_rules(phase.rules, ("phases", i, "rules"))})
        )
    if problems:
        raise _Located(problems)
    return scenario.model_copy(
        update={
            "name": scenario.name or default_name,
            "rules": rules,
            "phases": tuple(phases),
        }
    )


class _Located(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems


# --------------------------------------------------------------------------- loading


def _too_many(doc: Document) -> list[Problem]:
    """Refuse more rules or phases than :data:`yamlsource.MAX_RULES` / ``MAX_PHASES``,
    before validating them one by one (which would take long)."""
    data = doc.data
    phases = data.get("phases")
    problems: list[Problem] = []

    def add(path: DocPath, message: str) -> None:
        problems.append(Problem(format_path(path), message, *(doc.position(path) or (None, None))))

    if isinstance(phases, list) and len(phases) > yamlsource.MAX_PHASES:
        add(("phases",), f"{len(phases)} phases; a scenario has at most {yamlsource.MAX_PHASES}")
    lists: list[tuple[DocPath, Any]] = [(("rules",), data.get("rules"))]
    if isinstance(phases, list):
        lists += [
            (("phases", i, "rules"), p.get("rules"))
            for i, p in enumerate(phases)
            if isinstance(p, dict)
        ]
    total = 0
    for path, rules in lists:
        if not isinstance(rules, list):
            continue
        total += len(rules)
        if total > yamlsource.MAX_RULES:
            at = (*path, len(rules) - (total - yamlsource.MAX_RULES))
            limit = yamlsource.MAX_RULES
            add(at, f"too many rules: a scenario has at most {limit} (all phases together)")
            break
    return problems


def _validate(doc: Document, source: str, default_name: str) -> Scenario:
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else f"{_shown(doc.data)}"
        raise ScenarioError(
            source,
            [Problem("scenario", f"must be a mapping with rules or phases, got {kind}", 1, 1)],
        )
    too_many = _too_many(doc)
    if too_many:
        raise ScenarioError(source, too_many)
    try:
        scenario = Scenario.model_validate(doc.data)
    except ValidationError as exc:
        raise ScenarioError(source, _problems(exc, doc)) from None
    if doc.problems:
        raise ScenarioError(source, [p for _, p in doc.problems])
    try:
        return _finish(scenario, doc, default_name)
    except _Located as located:
        raise ScenarioError(source, located.problems) from None


def model_document(model: BaseModel) -> dict[str, Any]:
    """A model as the JSON a scenario file would hold: defaults left out (fault ``type``s
    kept), so it loads back to an equal model."""
    doc: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        value = getattr(model, name)
        if name == "type":
            doc[key] = value
        elif key not in doc:
            continue
        elif isinstance(value, BaseModel):
            doc[key] = model_document(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            doc[key] = [model_document(v) for v in value]
    return doc


def load_text(text: str, source: str = "<string>", default_name: str = "inline") -> Scenario:
    """Parse and validate YAML (or JSON) text."""
    try:
        doc = yamlsource.parse(text)
    except yamlsource.YamlSourceError as exc:
        raise ScenarioError(source, exc.problems) from None
    return _validate(doc, source, default_name)


def load_data(data: Any, source: str = "<data>", default_name: str = "inline") -> Scenario:
    """Validate already-parsed data (a dict from Python or JSON)."""
    return _validate(Document(data), source, default_name)


def load_file(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        text = yamlsource.read_text(p)
    except FileNotFoundError:
        raise ScenarioError(str(path), [Problem("file", "no such file")]) from None
    except yamlsource.FileRefused as exc:
        raise ScenarioError(str(path), [Problem("file", str(exc))]) from None
    return load_text(text, str(path), default_name=p.stem)


# --------------------------------------------------------------------------- shipped


@dataclass(frozen=True)
class Shipped:
    """A scenario that comes with chaosproxy."""

    name: str
    path: Path

    def load(self) -> Scenario:
        return load_file(self.path)


def shipped_dir() -> Path:
    """Where the shipped scenarios are: installed beside this module (a wheel puts them in
    chaosproxy/scenarios/; in a checkout that is a symlink to the top-level scenarios/)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "scenarios", here.parent / "scenarios"):
        if (candidate / "schema.json").is_file():
            return candidate
    raise ScenarioError(
        "chaosproxy", [Problem("scenarios", f"shipped scenarios not found near {here}")]
    )


def shipped(directory: Path | None = None) -> list[Shipped]:
    """The scenarios in ``directory`` (default: the shipped ones), sorted by name."""
    base = directory or shipped_dir()
    files = sorted([*base.glob("*.yaml"), *base.glob("*.yml")])
    return [Shipped(f.stem, f) for f in files]


def find(spec: str, directories: Sequence[Path] = ()) -> Path:
    """Resolve ``--scenario``: an existing path, else a shipped (or listed-dir) name."""
    as_path = Path(spec)
    if as_path.suffix in (".yaml", ".yml", ".json") or as_path.exists() or "/" in spec:
        return as_path
    for base in (*directories, shipped_dir()):
        for ext in (".yaml", ".yml"):
            candidate = base / f"{spec}{ext}"
            if candidate.is_file():
                return candidate
    listed = [(str(d), sorted(s.name for s in shipped(d))) for d in directories]
    listed.append(("shipped", sorted(s.name for s in shipped(shipped_dir()))))
    names = [name for _, group in listed for name in group]
    where = "; ".join(f"{label}: {', '.join(group) or '(none)'}" for label, group in listed)
    raise ScenarioError(
        spec,
        [
            Problem(
                "scenario",
                f"no scenario file or shipped scenario named {spec!r}{_suggest(spec, names)}; "
                f"{where}",
            )
        ],
    )


def resolve(spec: str, directories: Sequence[Path] = ()) -> tuple[Scenario, Path]:
    """Load ``--scenario`` (a path or a shipped name)."""
    path = find(spec, directories)
    return load_file(path), path


# --------------------------------------------------------------------------- schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files (``chaosproxy schema``, ``scenarios/schema.json``)."""
    schema = TypeAdapter(Scenario).json_schema(by_alias=True, mode="validation")
    out: dict[str, Any] = {
        "$schema": SCHEMA_URL,
        "$id": "https://chaosproxy.dev/schema/scenario-v1.json",
        "title": "chaosproxy scenario",
    }
    out.update(schema)
    out["description"] = (
        "A chaosproxy scenario: which requests get which faults. "
        "See docs/scenarios.md in the chaosproxy repository."
    )
    return out


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


__all__ = [
    "PASSTHROUGH",
    "Fault",
    "Match",
    "PerRequest",
    "Phase",
    "Rule",
    "Scenario",
    "ScenarioError",
    "Shipped",
    "find",
    "json_schema",
    "load_data",
    "load_file",
    "load_text",
    "resolve",
    "shipped",
    "shipped_dir",
]
