"""The Assessment: what ``chaosproxy assess`` learned about a client, as data and as JSON.

The JSON document (``schema_version`` 1) is the contract between the engine (runner,
infer) and what people see (report card, HTML, dashboard): :meth:`Assessment.to_json`
writes it, :meth:`Assessment.from_json` reads it back, :func:`json_schema` publishes it
(``chaosproxy assess --schema``). New keys are additive; readers ignore unknown ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 1

BackoffKind = Literal["none", "constant", "linear", "exponential"]
Confidence = Literal["high", "medium", "low"]
BACKOFF_KINDS: tuple[str, ...] = ("none", "constant", "linear", "exponential")
CONFIDENCES: tuple[str, ...] = ("high", "medium", "low")

#: The policy items, in the order a report lists them (keys of ``policy`` and ``evidence``).
POLICY_ITEMS: tuple[str, ...] = (
    "timeout_s",
    "connect_timeout_s",
    "attempts",
    "backoff",
    "retry_after",
    "retries_4xx",
    "retries_on_reset",
    "retries_non_idempotent",
    "idempotency_key",
    "breaker",
    "fallback",
    "malformed_is_failure",
    "app_latency_budget_s",
)


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event of a running assessment (``done``: this experiment is over)."""

    experiment: str
    title: str
    sample: int
    samples: int
    done: bool = False


@dataclass(slots=True)
class Backoff:
    """The wait between attempts: ``base_s * multiplier**(n-1)`` (exponential),
    ``base_s * n`` (linear), ``base_s`` (constant), capped at ``cap_s``."""

    kind: BackoffKind = "none"
    base_s: float | None = None
    multiplier: float | None = None
    cap_s: float | None = None
    jitter: bool | None = None
    increment_s: float | None = None
    """Linear only: what each wait adds to the one before."""
    first_immediate: bool = False
    """The first retry came at once; ``base_s`` is the first wait that waited (urllib3)."""


@dataclass(slots=True)
class RetryAfter:
    """``honoured``: the client waited what Retry-After asked (up to ``cap_s`` if capped)."""

    honoured: bool | None = None
    cap_s: float | None = None


@dataclass(slots=True)
class Breaker:
    """A circuit breaker: opens after ``opens_after`` failures, lets ``half_open_probes``
    calls through ``reset_s`` seconds later."""

    opens_after: int | None = None
    reset_s: float | None = None
    half_open_probes: int | None = None


@dataclass(slots=True)
class Policy:
    """The client's resilience policy as inferred; None: not probed or not observable."""

    timeout_s: float | None = None
    """Seconds until the client abandons a hung upstream (read); None: none within the cap."""
    connect_timeout_s: float | None = None
    """Until it abandons a connection that never opens, where that differs from ``timeout_s``.
    Not probed yet (a proxy accepts every connection): always None for now."""
    attempts: int | None = None
    """Calls of one logical request before the client gives up (1: no retries)."""
    backoff: Backoff | None = None
    retry_after: RetryAfter | None = None
    retries_4xx: bool | None = None
    retries_on_reset: bool | None = None
    retries_non_idempotent: bool | None = None
    """Probed with ``--trigger-method POST`` only."""
    idempotency_key: bool | None = None
    """Whether the retries of a non-idempotent call carried an Idempotency-Key."""
    breaker: Breaker | None = None
    """None: no breaker seen (or not probed, e.g. ``--quick``: see ``evidence``)."""
    fallback: bool | None = None
    """The app answered 2xx while its upstream failed."""
    malformed_is_failure: bool | None = None
    """The app treated a malformed upstream body as a failure (retried, 5xx or fallback)."""
    app_latency_budget_s: float | None = None
    """The longest the app took to answer while its upstream failed or hung."""


@dataclass(slots=True)
class Evidence:
    """What a policy item rests on."""

    samples: int
    confidence: Confidence
    experiments: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(slots=True)
class Target:
    """What was assessed: ``trigger`` is ``url`` or ``command``."""

    trigger: Literal["url", "command"]
    upstream: str
    url: str | None = None
    method: str | None = None
    command: list[str] | None = None
    proxy_url: str | None = None
    """Where the app under test had to send its upstream calls (the proxy)."""


@dataclass(slots=True)
class Outcome:
    """How one triggered call ended for the caller (the app's answer or the command's exit)."""

    status: int | None = None
    exit_code: int | None = None
    duration_s: float = 0.0
    body_excerpt: str = ""
    error: str | None = None
    """The trigger itself failed (the app did not answer within the cap, or refused)."""


@dataclass(slots=True)
class Attempt:
    """One upstream call the proxy saw during a sample."""

    t_s: float
    """Seconds since the sample's trigger started."""
    method: str
    path: str
    status: int | None
    """The status the client received; None: reset, closed, or it gave up first."""
    fault: str | None
    """The fault injected (``error 503``, ``abort reset``...), None: passed through."""
    duration_s: float
    idempotency_key: str | None = None
    outcome: str = "response"
    """As the decision log's ``outcome`` (``response``, ``reset``, ``client_disconnected``...)."""


@dataclass(slots=True)
class Sample:
    index: int
    outcome: Outcome
    attempts: list[Attempt] = field(default_factory=list)
    started_s: float = 0.0
    """Seconds from the experiment's start to this sample's trigger."""


@dataclass(slots=True)
class ExperimentResult:
    """One experiment of the battery: the scenario applied, its samples, what they showed."""

    name: str
    title: str
    scenario: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    findings: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Tool:
    name: str = "chaosproxy"
    version: str = ""


@dataclass(slots=True)
class Assessment:
    """The whole result of one ``chaosproxy assess`` run."""

    started_at: str
    """UTC, ISO 8601 with a ``Z`` (``2026-12-06T07:00:00Z``)."""
    duration_s: float
    seed: int
    quick: bool
    target: Target
    policy: Policy = field(default_factory=Policy)
    evidence: dict[str, Evidence] = field(default_factory=dict)
    experiments: list[ExperimentResult] = field(default_factory=list)
    tool: Tool = field(default_factory=Tool)
    schema_version: int = SCHEMA_VERSION

    def experiment(self, name: str) -> ExperimentResult | None:
        """The experiment called ``name``, or None if it did not run."""
        return next((e for e in self.experiments if e.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The JSON document (a dict of plain values; ``json.dumps`` it)."""
        return {
            "schema_version": self.schema_version,
            "tool": _plain(self.tool),
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "seed": self.seed,
            "quick": self.quick,
            "target": _plain(self.target),
            "policy": _plain(self.policy),
            "evidence": {k: _plain(v) for k, v in self.evidence.items()},
            "experiments": [_plain(e) for e in self.experiments],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Assessment:
        """The inverse of :meth:`to_json` (unknown keys are ignored)."""
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {version!r}: this reader knows {SCHEMA_VERSION}")
        pol = dict(doc.get("policy") or {})
        policy = _build(
            Policy,
            pol,
            backoff=_maybe(Backoff, pol.get("backoff")),
            retry_after=_maybe(RetryAfter, pol.get("retry_after")),
            breaker=_maybe(Breaker, pol.get("breaker")),
        )
        experiments = []
        for e in doc.get("experiments") or []:
            samples = [
                _build(
                    Sample,
                    s,
                    outcome=_build(Outcome, s.get("outcome") or {}),
                    attempts=[_build(Attempt, a) for a in s.get("attempts") or []],
                )
                for s in e.get("samples") or []
            ]
            experiments.append(_build(ExperimentResult, e, samples=samples))
        return _build(
            cls,
            doc,
            tool=_build(Tool, doc.get("tool") or {}),
            target=_build(Target, doc["target"]),
            policy=policy,
            evidence={k: _build(Evidence, v) for k, v in (doc.get("evidence") or {}).items()},
            experiments=experiments,
        )


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _build(cls: Any, doc: dict[str, Any], **given: Any) -> Any:
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in doc.items() if k in known}
    values.update(given)
    return cls(**values)


def _maybe(cls: Any, doc: dict[str, Any] | None) -> Any:
    return None if doc is None else _build(cls, doc)


# ---------------------------------------------------------------------- JSON Schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_NUM = {"type": "number"}
_NONNEG = {"type": "number", "minimum": 0}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_STR = {"type": "string"}


def _object(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the document :meth:`Assessment.to_json` writes."""
    backoff = _object(
        {
            "kind": {"enum": list(BACKOFF_KINDS)},
            "base_s": _nullable(_NONNEG),
            "multiplier": _nullable(_NONNEG),
            "cap_s": _nullable(_NONNEG),
            "jitter": _nullable(_BOOL),
            "increment_s": _nullable(_NUM),
            "first_immediate": _BOOL,
        },
        required=["kind", "base_s", "multiplier", "cap_s", "jitter"],
    )
    retry_after = _object({"honoured": _nullable(_BOOL), "cap_s": _nullable(_NONNEG)})
    breaker = _object(
        {
            "opens_after": _nullable({"type": "integer", "minimum": 1}),
            "reset_s": _nullable(_NONNEG),
            "half_open_probes": _nullable({"type": "integer", "minimum": 0}),
        }
    )
    policy_props: dict[str, Any] = {
        "timeout_s": _nullable(_NONNEG),
        "connect_timeout_s": _nullable(_NONNEG),
        "attempts": _nullable({"type": "integer", "minimum": 1}),
        "backoff": _nullable({"$ref": "#/$defs/backoff"}),
        "retry_after": _nullable({"$ref": "#/$defs/retry_after"}),
        "retries_4xx": _nullable(_BOOL),
        "retries_on_reset": _nullable(_BOOL),
        "retries_non_idempotent": _nullable(_BOOL),
        "idempotency_key": _nullable(_BOOL),
        "breaker": _nullable({"$ref": "#/$defs/breaker"}),
        "fallback": _nullable(_BOOL),
        "malformed_is_failure": _nullable(_BOOL),
        "app_latency_budget_s": _nullable(_NONNEG),
    }
    evidence = _object(
        {
            "samples": {"type": "integer", "minimum": 0},
            "confidence": {"enum": list(CONFIDENCES)},
            "experiments": {"type": "array", "items": _STR},
            "note": _STR,
        },
        required=["samples", "confidence"],
    )
    attempt = _object(
        {
            "t_s": _NUM,
            "method": _STR,
            "path": _STR,
            "status": _nullable(_INT),
            "fault": _nullable(_STR),
            "duration_s": _NONNEG,
            "idempotency_key": _nullable(_STR),
            "outcome": _STR,
        },
        required=["t_s", "method", "path", "status", "fault", "duration_s"],
    )
    outcome = _object(
        {
            "status": _nullable(_INT),
            "exit_code": _nullable(_INT),
            "duration_s": _NONNEG,
            "body_excerpt": _STR,
            "error": _nullable(_STR),
        },
        required=["status", "exit_code", "duration_s"],
    )
    sample = _object(
        {
            "index": {"type": "integer", "minimum": 0},
            "outcome": {"$ref": "#/$defs/outcome"},
            "attempts": {"type": "array", "items": {"$ref": "#/$defs/attempt"}},
            "started_s": _NONNEG,
        },
        required=["index", "outcome", "attempts"],
    )
    experiment = _object(
        {
            "name": _STR,
            "title": _STR,
            "scenario": {"type": "object"},
            "samples": {"type": "array", "items": {"$ref": "#/$defs/sample"}},
            "findings": {"type": "object"},
        }
    )
    target = _object(
        {
            "trigger": {"enum": ["url", "command"]},
            "url": _nullable(_STR),
            "method": _nullable(_STR),
            "command": _nullable({"type": "array", "items": _STR}),
            "upstream": _STR,
            "proxy_url": _nullable(_STR),
        },
        required=["trigger", "url", "method", "command", "upstream"],
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://chaosproxy.dev/schemas/assessment-1.json",
        "title": "chaosproxy assessment",
        "description": "What `chaosproxy assess` inferred about a client's resilience policy.",
        "type": "object",
        "required": [
            "schema_version",
            "tool",
            "started_at",
            "duration_s",
            "seed",
            "quick",
            "target",
            "policy",
            "evidence",
            "experiments",
        ],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "tool": _object({"name": _STR, "version": _STR}),
            "started_at": {"type": "string", "format": "date-time"},
            "duration_s": _NONNEG,
            "seed": _INT,
            "quick": _BOOL,
            "target": {"$ref": "#/$defs/target"},
            "policy": _object(policy_props),
            "evidence": {
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/evidence"},
            },
            "experiments": {"type": "array", "items": {"$ref": "#/$defs/experiment"}},
        },
        "$defs": {
            "backoff": backoff,
            "retry_after": retry_after,
            "breaker": breaker,
            "evidence": evidence,
            "attempt": attempt,
            "outcome": outcome,
            "sample": sample,
            "experiment": experiment,
            "target": target,
        },
    }
