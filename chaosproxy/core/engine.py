"""Which rule fires for a request: matching, counters, probability, phases. Pure Python.

No mitmproxy import: the addon hands the engine a :class:`RequestView` and gets back a
:class:`Decision` (or None). Selection follows DESIGN.md to the letter::

    for rule in rules:                      # the active phase's rules when there are phases
        if not rule.match(request): continue
        rule.seen += 1
        if rule.seen <= rule.skip: continue
        if rule.every and (rule.seen - rule.skip) % rule.every != 0: continue
        if rule.times is not None and rule.injected >= rule.times: continue
        if draw(rule, rule.seen) >= rule.probability: continue
        rule.injected += 1
        return rule

After the match, a rule's selection is a chain of small steps (:class:`Skip`,
:class:`Every`, :class:`Times`, :class:`PerRequest`, :class:`Probability`, :class:`Gate`),
built once per rule with only the steps it uses. Each step both decides and says why not,
and ``decide`` and ``explain`` run the same chain: ``explain`` as a dry run, which changes
no counter, attempt or rate window.

Every random number comes from a stream derived from (seed, phase, rule name, the rule's
match number), so a seeded run decides the same for the Nth request matching a rule
whatever the concurrency or completion order.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import random
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from chaosproxy.core import grpc_protocol, regex, websocket
from chaosproxy.core.decisions import IDEMPOTENCY_HEADER, request_key
from chaosproxy.core.fault import Fault, Stage
from chaosproxy.core.grpc_protocol import method_of
from chaosproxy.core.oncelog import CountedWarning
from chaosproxy.core.scenario import PASSTHROUGH, Match, Phase, Rule, Scenario

Clock = Callable[[], float]

#: Where a decision is made: a request view's ``point`` (a view without one is a request).
#: ``request``: a request that makes or reuses its own upstream connection (reverse mode,
#: plain HTTP forward); ``tunneled``: a request inside a CONNECT tunnel (its connection was
#: decided at the CONNECT); ``connect``: a forward proxy's CONNECT; ``handshake``: a
#: reverse-mode client starting its TLS handshake, before any request.
POINTS = ("request", "tunneled", "connect", "handshake")
#: point -> the kinds of rules decided there (a rule's kind: see :func:`rule_kind`)
KINDS_AT: dict[str, frozenset[str]] = {
    "request": frozenset({"request", "connect"}),
    "tunneled": frozenset({"request"}),
    "connect": frozenset({"connect", "handshake"}),
    "handshake": frozenset({"handshake"}),
}
#: rule kind -> where it is decided, for ``explain``
_DECIDED_AT = {
    "connect": "at a CONNECT, or at a request that makes its own upstream connection",
    "handshake": "at a CONNECT, or as a reverse-mode client starts its TLS handshake",
    "request": "at requests",
}


def rule_kind(rule: Rule) -> str:
    """``request`` for a rule of request and response faults; ``connect`` for a rule of
    connect-stage faults, ``handshake`` when they act on the client's TLS handshake."""
    if not any(Stage.CONNECT in f.stages for f in rule.fault):
        return "request"
    return "handshake" if any(f.handshake for f in rule.fault) else "connect"


def point_of(req: RequestView) -> str:
    return getattr(req, "point", "request")


class RequestView(Protocol):
    """What the engine needs to know about a request. The addon adapts flows to it."""

    @property
    def method(self) -> str: ...

    @property
    def host(self) -> str:
        """The upstream host, lower case."""

    @property
    def upstream(self) -> str | None:
        """The upstream's NAME when several upstreams are configured."""

    @property
    def path(self) -> str:
        """The decoded path, without the query."""

    @property
    def url(self) -> str:
        """The full URL as requested (scheme, host, port, path and query)."""

    def header(self, name: str) -> Sequence[str]:
        """All values of a header (name in any case)."""

    def query(self, name: str) -> Sequence[str]:
        """All values of a query parameter."""

    def body(self) -> bytes:
        """The request body; only read when a rule matches on it."""


@dataclass(slots=True)
class SimpleRequest:
    """A RequestView from plain values: for ``explain``, tests and the Python API."""

    method: str
    host: str
    path: str
    headers: Sequence[tuple[str, str]] = ()
    query_pairs: Sequence[tuple[str, str]] = ()
    content: bytes = b""
    upstream: str | None = None
    scheme: str = "http"
    as_requested: str | None = None
    """The URL as the client sent it, when known (else rebuilt from the parts)."""
    point: str = "request"
    """Where it is decided (see :data:`POINTS`)."""

    @property
    def url(self) -> str:
        if self.as_requested is not None:
            return self.as_requested
        query = f"?{urlencode(list(self.query_pairs))}" if self.query_pairs else ""
        return f"{self.scheme}://{self.host}{quote(self.path)}{query}"

    def header(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def query(self, name: str) -> list[str]:
        return [v for k, v in self.query_pairs if k == name]

    def body(self) -> bytes:
        return self.content


# --------------------------------------------------------------------------- matching

TextTest = Callable[[str], bool]
_WILDCARDS = re.compile(r"[*?\[]")


def compile_pattern(pattern: str, *, ignore_case: bool = False) -> TextTest:
    """A test for a glob (``*`` crosses ``/``) or an ``re:`` regex (searched with RE2)."""
    if pattern.startswith("re:"):
        return regex.searcher(pattern[3:], ignore_case=ignore_case)
    flags = re.IGNORECASE if ignore_case else 0
    if not _WILDCARDS.search(pattern):
        if ignore_case:
            lowered = pattern.lower()
            return lambda text: text.lower() == lowered
        return pattern.__eq__
    rx = re.compile(fnmatch.translate(pattern), flags)
    return lambda text: rx.match(text) is not None


_REGEX_SPECIAL = frozenset("\\.^$*+?{}[]|()")


def literal_prefix(pattern: str) -> str:
    """A prefix every text ``pattern`` matches starts with ("" when there is none known):
    a glob's text before its first wildcard; an anchored regex's leading literal text."""
    if not pattern.startswith("re:"):
        found = _WILDCARDS.search(pattern)
        return pattern if found is None else pattern[: found.start()]
    rx = pattern[3:]
    if not rx.startswith("^") or "|" in rx:  # unanchored, or alternatives: no prefix
        return ""
    end = 1
    while end < len(rx) and rx[end] not in _REGEX_SPECIAL:
        end += 1
    prefix = rx[1:end]
    if end < len(rx) and rx[end] in "*?{":  # the last literal is quantified
        prefix = prefix[:-1]
    return prefix


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _json_lookup(doc: Any, dotted: str) -> tuple[bool, Any]:
    node = doc
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif (
            isinstance(node, list)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node[int(part)]
        else:
            return False, None
    return True, node


_NO_JSON = object()
#: Request bodies nested too deeply to parse as JSON (their match.json rules do not match).
UNREADABLE_BODIES = CountedWarning(
    logging.getLogger("chaosproxy"),
    "a request body is JSON nested too deeply to read; match.json rules do not match it",
)


class _Facts:
    """What the checks read about one request, each looked up at most once, and only if
    asked: the path, the method, header values, the body and its JSON."""

    __slots__ = ("_all_headers", "_doc", "_headers", "_method", "_path", "_text", "req")

    def __init__(self, req: RequestView) -> None:
        self.req = req
        self._path: str | None = None
        self._method: str | None = None
        self._headers: dict[str, Sequence[str]] | None = None
        self._all_headers = False
        self._text: str | None = None
        self._doc: Any = None

    @property
    def path(self) -> str:
        if self._path is None:
            self._path = self.req.path
        return self._path

    @property
    def method(self) -> str:
        if self._method is None:
            self._method = self.req.method.upper()
        return self._method

    def header(self, name: str) -> Sequence[str]:
        if self._headers is None:
            every = getattr(self.req, "headers_by_name", None)
            self._headers = every() if every is not None else {}
            self._all_headers = every is not None
        if self._all_headers:  # the names are lower case, as bytes.lower() makes them
            key = name.encode("utf-8", "surrogateescape").lower()
            return self._headers.get(key.decode("utf-8", "surrogateescape"), ())
        values = self._headers.get(name)
        if values is None:
            values = self._headers[name] = self.req.header(name)
        return values

    def query(self, name: str) -> Sequence[str]:
        return self.req.query(name)

    def text(self) -> str:
        if self._text is None:
            self._text = self.req.body().decode("utf-8", "replace")
        return self._text

    def json(self) -> Any:
        if self._doc is None:
            try:
                self._doc = json.loads(self.text())
            except ValueError:
                self._doc = _NO_JSON
            except RecursionError:  # a hostile body: no match, one line a minute at most
                self._doc = _NO_JSON
                UNREADABLE_BODIES.note()
        return self._doc


class Check:
    """One condition of a match block: ``test`` says whether it holds (the hot path, no
    text built); ``why`` says why not, for ``explain``."""

    __slots__ = ("test", "why")

    def __init__(self, test: Callable[[_Facts], bool], why: Callable[[_Facts], str]) -> None:
        self.test = test
        self.why = why


def _compile_match(match: Match) -> tuple[Check, ...]:
    checks: list[Check] = []
    if match.method:
        methods = frozenset(match.method)
        wanted = "/".join(match.method)
        checks.append(
            Check(
                lambda f: f.method in methods,
                lambda f: f"method {f.method} is not {wanted}",
            )
        )
    if match.path is not None:
        path_test, path_pattern = compile_pattern(match.path), match.path
        checks.append(
            Check(
                lambda f: path_test(f.path),
                lambda f: f"path {f.path} does not match {path_pattern!r}",
            )
        )
    if match.host is not None:
        host_test, host_pattern = compile_pattern(match.host, ignore_case=True), match.host

        def host(f: _Facts) -> bool:
            upstream = f.req.upstream
            return host_test(f.req.host) or (upstream is not None and host_test(upstream))

        checks.append(Check(host, lambda f: f"host {f.req.host} does not match {host_pattern!r}"))
    for name, pattern in match.headers.items():
        checks.append(_values_check("header", name, pattern, _Facts.header))
    for name, pattern in match.query.items():
        checks.append(_values_check("query parameter", name, pattern, _Facts.query))
    if match.body is not None:
        body_test, body_pattern = compile_pattern(match.body), match.body
        checks.append(
            Check(
                lambda f: body_test(f.text()),
                lambda f: f"body does not match {body_pattern!r}",
            )
        )
    for dotted, pattern in match.json_.items():
        checks.append(_json_check(dotted, pattern))
    if match.grpc is not None:
        checks.append(_grpc_check(match.grpc))
    return tuple(checks)


def _grpc_check(pattern: str) -> Check:
    """A gRPC call (content-type ``application/grpc*``) whose method matches ``pattern``."""
    test = compile_pattern(pattern)

    def holds(f: _Facts) -> bool:
        types = f.header("content-type")
        return bool(types) and grpc_protocol.is_grpc(types[0]) and test(method_of(f.path))

    def why(f: _Facts) -> str:
        types = f.header("content-type")
        if not types or not grpc_protocol.is_grpc(types[0]):
            shown = repr(types[0]) if types else "none"
            return f"not a gRPC call (content-type {shown}, not application/grpc*)"
        return f"gRPC method {method_of(f.path)} does not match {pattern!r}"

    return Check(holds, why)


def _values_check(
    what: str, name: str, pattern: str, get: Callable[[_Facts, str], Sequence[str]]
) -> Check:
    test = compile_pattern(pattern)

    def holds(f: _Facts) -> bool:
        return any(test(v) for v in get(f, name))

    def why(f: _Facts) -> str:
        values = get(f, name)
        if not values:
            return f"no {what} {name}"
        return f"{what} {name}: {values[0]!r} does not match {pattern!r}"

    return Check(holds, why)


def _json_check(dotted: str, pattern: str) -> Check:
    test = compile_pattern(pattern)

    def holds(f: _Facts) -> bool:
        doc = f.json()
        if doc is _NO_JSON:
            return False
        found, value = _json_lookup(doc, dotted)
        return found and test(_json_text(value))

    def why(f: _Facts) -> str:
        doc = f.json()
        if doc is _NO_JSON:
            return "the body is not JSON"
        found, value = _json_lookup(doc, dotted)
        if not found:
            return f"the JSON body has no {dotted}"
        return f"JSON {dotted} = {_json_text(value)!r} does not match {pattern!r}"

    return Check(holds, why)


def _holds(checks: tuple[Check, ...], facts: _Facts) -> bool:
    for check in checks:
        if not check.test(facts):
            return False
    return True


def _first_failure(checks: tuple[Check, ...], facts: _Facts) -> str | None:
    for check in checks:
        if not check.test(facts):
            return check.why(facts)
    return None


# --------------------------------------------------------------------------- randomness


def _digest(seed: int, phase: str | None, rule: str, n: int | str, stream: str) -> int:
    key = f"{seed}\x1f{phase or ''}\x1f{rule}\x1f{n}\x1f{stream}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def draw(seed: int, phase: str | None, rule: str, n: int) -> float:
    """The decision draw in [0, 1) for the rule's Nth match."""
    return _digest(seed, phase, rule, n, "decide") / 2**64


def draw_for_key(seed: int, phase: str | None, rule: str, key: str) -> float:
    """The decision draw in [0, 1) for one key value (a sticky key or a request identity).

    The same key always draws the same number for a given seed and rule, so a rule with
    probability p fires for a fixed share p of the keys, and raising p only adds keys.
    """
    return _digest(seed, phase, rule, key, "key") / 2**64


def request_identity(req: RequestView) -> str:
    """What makes two attempts "the same request": its Idempotency-Key header if it has
    one, else method + URL + a hash of the body. The same key as the decision log's."""
    keys = req.header(IDEMPOTENCY_HEADER)
    return request_key(req.method, req.url, req.body(), keys[0] if keys else None)


def _sticky_value(rule: Rule, req: RequestView) -> str | None:
    """The value of a sticky rule's key for ``req`` ("" without one); None: not sticky."""
    spec = rule.sticky_key
    if spec is None:
        return None
    kind, name = spec
    values = req.header(name) if kind == "header" else req.query(name)
    return values[0] if values else ""


#: Distinct requests a per_request rule remembers; the oldest are forgotten beyond this.
MAX_IDENTITIES = 100_000


def new_seed() -> int:
    """A seed for runs that were not given one (printed, so they can be replayed)."""
    return secrets.randbelow(2**31)


# --------------------------------------------------------------------------- selection steps

_UNSET: Any = object()


class Trial:
    """One rule tried on one matching request: what the selection steps read, and what
    they found on the way (the identity, the attempt, the draw, the gate's answer).

    With ``dry_run`` (``explain``) no step changes the rule's state."""

    __slots__ = (
        "_sticky",
        "attempt",
        "clock",
        "dry_run",
        "failed",
        "identity",
        "n",
        "req",
        "retry_after",
        "seed",
        "state",
        "value",
    )

    def __init__(
        self, state: RuleState, req: RequestView, n: int, seed: int, clock: Clock, dry_run: bool
    ) -> None:
        self.state = state
        self.req = req
        self.n = n
        """The rule's match number for this request (counted from 1 in the phase)."""
        self.seed = seed
        self.clock = clock
        self.dry_run = dry_run
        self.identity: str | None = None
        self.attempt: int | None = None
        self.value = 0.0
        self.retry_after: int | None = None
        self.failed: Step | None = None
        """The first step that did not pass; None: the rule fires."""
        self._sticky: str | None = _UNSET

    @property
    def sticky(self) -> str | None:
        """The sticky key's value for this request ("" without one); None: not sticky."""
        if self._sticky is _UNSET:
            self._sticky = _sticky_value(self.state.rule, self.req)
        return self._sticky

    def decision(self) -> Decision:
        state = self.state
        return Decision(
            state.rule,
            state.phase,
            self.n,
            self.seed,
            self.retry_after,
            self.identity,
            self.attempt,
            self.sticky,
        )


class Step:
    """One selection step of a rule, tenacity-style: ``passes`` decides (the hot path: no
    text built, and state changed only when the trial is not a dry run); ``why`` says why
    a trial did not pass, for ``explain``."""

    __slots__ = ()

    def passes(self, trial: Trial) -> bool:
        raise NotImplementedError  # abstract

    def why(self, trial: Trial) -> str:
        raise NotImplementedError  # abstract


class Skip(Step):
    """``skip: N``: let the first N matching requests through."""

    __slots__ = ("skip",)

    def __init__(self, skip: int) -> None:
        self.skip = skip

    def passes(self, trial: Trial) -> bool:
        return trial.n > self.skip

    def why(self, trial: Trial) -> str:
        return f"skip: {self.skip} lets it through (match #{trial.n})"


class Every(Step):
    """``every: N``: after the skipped ones, only every Nth matching request."""

    __slots__ = ("every", "skip")

    def __init__(self, every: int, skip: int) -> None:
        self.every = every
        self.skip = skip

    def passes(self, trial: Trial) -> bool:
        return (trial.n - self.skip) % self.every == 0

    def why(self, trial: Trial) -> str:
        return f"every: {self.every} (match #{trial.n} is not its turn)"


class Times(Step):
    """``times: N``: at most N injections in the phase."""

    __slots__ = ("times",)

    def __init__(self, times: int) -> None:
        self.times = times

    def passes(self, trial: Trial) -> bool:
        return trial.state.injected < self.times

    def why(self, trial: Trial) -> str:
        return f"times: {self.times} already injected"


class PerRequest(Step):
    """``per_request: {times: N}``: the first N attempts of each distinct request (its
    identity: Idempotency-Key, else method + URL + body hash). Counts the attempt."""

    __slots__ = ("times",)

    def __init__(self, times: int) -> None:
        self.times = times

    def passes(self, trial: Trial) -> bool:
        identity = trial.identity = request_identity(trial.req)
        attempt = trial.attempt = trial.state.attempt(identity, dry_run=trial.dry_run)
        return attempt <= self.times

    def why(self, trial: Trial) -> str:
        req = trial.req
        return (
            f"per_request: attempt {trial.attempt} of {req.method} {req.url} "
            f"({trial.identity}) comes after the {self.times} that fail"
        )


class Probability(Step):
    """``probability: p``: the draw for this request is below p. The draw is per sticky
    key, else per request identity (per_request: all attempts of one request share their
    fate), else per match number."""

    __slots__ = ("probability",)

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def passes(self, trial: Trial) -> bool:
        state, sticky = trial.state, trial.sticky
        if sticky is not None:
            value = draw_for_key(trial.seed, state.phase, state.name, f"sticky\x1f{sticky}")
        elif trial.identity is not None:
            value = draw_for_key(
                trial.seed, state.phase, state.name, f"request\x1f{trial.identity}"
            )
        else:
            value = draw(trial.seed, state.phase, state.name, trial.n)
        trial.value = value
        return value < self.probability

    def why(self, trial: Trial) -> str:
        rule = trial.state.rule
        if trial.sticky is not None:
            what = f"{rule.sticky} = {trial.sticky!r}"
        elif trial.identity is not None:
            what = trial.identity
        else:
            what = f"match #{trial.n}"
        return (
            f"the draw for {what} is {trial.value:.3f} >= probability "
            f"{self.probability:g} (seed {trial.seed})"
        )


class Gate(Step):
    """A gating fault (``rate_limit``) decides last, from the state it keeps: under its
    limit the rule does not fire; over it, the fault acts, told when to retry."""

    __slots__ = ("fault",)

    def __init__(self, fault: Fault) -> None:
        self.fault = fault

    def passes(self, trial: Trial) -> bool:
        trial.retry_after = self.fault.gate(
            trial.state.gate_state, _first_header(trial.req), trial.clock(), dry_run=trial.dry_run
        )
        return trial.retry_after is not None

    def why(self, trial: Trial) -> str:
        return self.fault.gate_declines()


def compile_steps(rule: Rule, gate: Fault | None) -> tuple[Step, ...]:
    """The selection steps ``rule`` uses, in the order DESIGN.md gives them."""
    steps: list[Step] = []
    if rule.skip:
        steps.append(Skip(rule.skip))
    if rule.every:
        steps.append(Every(rule.every, rule.skip))
    if rule.times is not None:
        steps.append(Times(rule.times))
    if rule.per_request is not None:
        steps.append(PerRequest(rule.per_request.times))
    if rule.probability < 1:
        steps.append(Probability(rule.probability))
    if gate is not None:
        steps.append(Gate(gate))
    return tuple(steps)


# --------------------------------------------------------------------------- state


@dataclass(eq=False)
class RuleState:
    """A rule compiled for matching, with its counters."""

    rule: Rule
    phase: str | None
    checks: tuple[Check, ...]
    steps: tuple[Step, ...]
    """The selection steps after the match, in order (see :func:`compile_steps`)."""
    gate: Fault | None
    """The rule's gating fault (a rate limit), asked last; None for most rules."""
    head_checks: tuple[Check, ...] = ()
    """The checks that do not read the body (all of them when the rule has no body match)."""
    needs_body: bool = False
    path_prefix: str = ""
    """Every path the rule matches starts with this: a quick first test."""
    kind: str = "request"
    """Where it is decided: ``request``, ``connect`` or ``handshake`` (:func:`rule_kind`)."""
    seen: int = 0
    """Matching requests in the current phase (selection counts these)."""
    injected: int = 0
    total_seen: int = 0
    """Matching requests since the scenario was applied or reset (reported)."""
    total_injected: int = 0
    gate_state: Any = None
    """The gate's own state across requests (a rate limit's windows)."""
    attempts: OrderedDict[str, int] = field(default_factory=OrderedDict)
    """per_request: attempts seen so far for each request identity."""

    @property
    def name(self) -> str:
        return self.rule.label

    def __post_init__(self) -> None:
        self.gate_state = self.gate.new_state() if self.gate is not None else None

    def clear(self) -> None:
        self.seen = self.injected = 0
        self.gate_state = self.gate.new_state() if self.gate is not None else None
        self.attempts.clear()

    def attempt(self, identity: str, *, dry_run: bool = False) -> int:
        """Count one attempt of the request ``identity``; return its number (from 1). With
        ``dry_run``, the number it would get, counting nothing."""
        if dry_run:
            return self.attempts.get(identity, 0) + 1
        n = self.attempts.pop(identity, 0) + 1
        self.attempts[identity] = n
        if len(self.attempts) > MAX_IDENTITIES:
            self.attempts.popitem(last=False)
        return n


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule that fired for one request, and how to derive its fault randomness."""

    rule: Rule
    phase: str | None
    match_number: int
    seed: int
    retry_after: int | None = None
    identity: str | None = None
    """per_request rules: the request's identity; ``attempt`` is its attempt number."""
    attempt: int | None = None
    sticky: str | None = None
    """sticky rules: the key value the draw was made for."""

    @property
    def name(self) -> str:
        return self.rule.label

    @property
    def faults(self) -> tuple[Any, ...]:
        return self.rule.fault

    def rng(self) -> random.Random:
        """The fault's own stream (jitter, garbage bytes, where JSON breaks)."""
        return random.Random(_digest(self.seed, self.phase, self.name, self.match_number, "fault"))

    def rng_for(self, stream: str) -> random.Random:
        """Another stream of the fault's randomness, by name (a WebSocket direction's)."""
        key = f"fault:{stream}"
        return random.Random(_digest(self.seed, self.phase, self.name, self.match_number, key))


@dataclass(frozen=True, slots=True)
class Verdict:
    """``explain``: what one rule would do with a request, and why."""

    rule: str
    phase: str | None
    fires: bool
    reason: str
    fault: str


@dataclass(frozen=True, slots=True)
class Event:
    """Something the log should say: a phase began, a ttl ran out."""

    kind: str
    message: str
    phase: str | None = None


#: A rule with ws_* faults matches WebSocket upgrades only (its faults act on messages).
_UPGRADE = Check(
    lambda f: websocket.is_upgrade(lambda name: next(iter(f.header(name)), None)),
    lambda f: websocket.NOT_AN_UPGRADE,
)


def _compile_rules(rules: Sequence[Rule], phase: str | None) -> list[RuleState]:
    out = []
    for rule in rules:
        gate = next((f for f in rule.fault if f.gates), None)
        checks = _compile_match(rule.match)
        upgrades_only = any(f.stage is Stage.MESSAGE for f in rule.fault)
        if upgrades_only:
            checks = (_UPGRADE, *checks)
        body_match = rule.match.body is not None or bool(rule.match.json_)
        # per_request: a request's identity includes a hash of its body
        needs_body = body_match or rule.per_request is not None
        head = (
            _compile_match(rule.match.model_copy(update={"body": None, "json_": {}}))
            if body_match
            else checks
        )
        if body_match and upgrades_only:
            head = (_UPGRADE, *head)
        prefix = literal_prefix(rule.match.path) if rule.match.path is not None else ""
        steps = compile_steps(rule, gate)
        kind = rule_kind(rule)
        out.append(RuleState(rule, phase, checks, steps, gate, head, needs_body, prefix, kind))
    return out


def _compile_phases(scenario: Scenario) -> list[tuple[Phase, list[RuleState]]]:
    if scenario.phases:
        return [(p, _compile_rules(p.rules, p.name)) for p in scenario.phases]
    return [(Phase(name="-", rules=scenario.rules), _compile_rules(scenario.rules, None))]


class Engine:
    """Decides, for each request, which rule of the active scenario fires. Thread-safe."""

    def __init__(
        self,
        scenario: Scenario = PASSTHROUGH,
        *,
        seed: int | None = None,
        source: str | None = None,
        clock: Clock = time.monotonic,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self.seed_override = seed
        self.on_event = on_event
        self.on_change: Callable[[str], None] | None = None
        """Called after apply, reset, pause, resume and jump with that word (shared state
        tells the other replicas); not for changes the clock makes (phases, ttl)."""
        self.paused = False
        self.started = False
        """True once the proxy is ready (:meth:`start`): the phase clock runs from then."""
        self.requests = 0
        self.injected = 0
        #: requests given the faults they asked for (``request_faults``)
        self.asked = 0
        self._apply(scenario, source)

    # ------------------------------------------------------------------ scenario

    def _apply(
        self,
        scenario: Scenario,
        source: str | None,
        seed: int | None = None,
        phases: list[tuple[Phase, list[RuleState]]] | None = None,
    ) -> None:
        self.scenario = scenario
        self.source = source
        # the most specific seed wins: the apply's, the run's, the scenario's, a random one
        if seed is not None:
            self.seed, self.seed_source = seed, "apply"
        elif self.seed_override is not None:
            self.seed, self.seed_source = self.seed_override, "run"
        elif scenario.seed is not None:
            self.seed, self.seed_source = scenario.seed, "scenario"
        else:
            self.seed, self.seed_source = new_seed(), "random"
        self._phases = phases if phases is not None else _compile_phases(scenario)
        self._timeline = bool(scenario.phases)
        self._all = [state for _, states in self._phases for state in states]
        self.requests = self.injected = self.asked = 0
        now = self._clock()
        self.applied_at = now
        self._phase_index = 0
        self._phase_started = now
        self._expires = now + scenario.ttl if scenario.ttl else None

    def apply(self, scenario: Scenario, source: str | None = None, seed: int | None = None) -> None:
        """Replace the active scenario: counters, windows and the phase clock start afresh.
        ``seed``, given with this apply, wins over the run's and the scenario's own."""
        phases = _compile_phases(scenario)  # outside the lock: requests are decided meanwhile
        with self._lock:
            self._apply(scenario, source, seed, phases)
        if self._timeline and self.started:  # before start, start() says it
            self._emit(Event("phase", f"phase {self.phase} begins", self.phase))
        self._changed("apply")

    def start(self) -> None:
        """The proxy is ready: the phase clock (and ttl) count from now."""
        with self._lock:
            now = self._clock()
            self.applied_at = self._phase_started = now
            self._expires = now + self.scenario.ttl if self.scenario.ttl else None
            self.started = True
        if self._timeline:
            self._emit(Event("phase", f"phase {self.phase} begins", self.phase))

    def reset(self) -> None:
        """Counters, rate windows and the phase clock back to zero."""
        with self._lock:
            for state in self._all:
                state.clear()
                state.total_seen = state.total_injected = 0
            self.requests = self.injected = self.asked = 0
            self._phase_index = 0
            self._phase_started = self._clock()
        if self._timeline:
            self._emit(Event("phase", f"phase {self.phase} begins (reset)", self.phase))
        self._changed("reset")

    def pause(self) -> None:
        """Stop injecting: every request passes through until :meth:`resume`."""
        self.paused = True
        self._changed("pause")

    def resume(self) -> None:
        self.paused = False
        self._changed("resume")

    # ------------------------------------------------------------------ phases

    @property
    def phase(self) -> str | None:
        """The active phase's name (None without phases)."""
        return self._phases[self._phase_index][0].name if self._timeline else None

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p, _ in self._phases] if self._timeline else []

    def jump_to(self, name: str) -> None:
        """Make phase ``name`` active now; its clock and counters start afresh."""
        with self._lock:
            names = self.phase_names
            if name not in names:
                valid = ", ".join(names) if names else "none: this scenario has no phases"
                raise KeyError(f"no phase {name!r}; phases: {valid}")
            self._enter(names.index(name), self._clock())
        self._emit(Event("phase", f"phase {name} begins (jump)", name))
        self._changed("jump")

    def _enter(self, index: int, started: float) -> None:
        self._phase_index = index
        self._phase_started = started
        for state in self._phases[index][1]:
            state.clear()

    def _advance(self, now: float) -> list[Event]:
        """Move the timeline and ttl on to ``now``; return what changed."""
        events: list[Event] = []
        if self._expires is not None and now >= self._expires:
            name = self.scenario.label
            self._apply(PASSTHROUGH, None)
            events.append(Event("ttl", f"scenario {name} reached its ttl: now passing through"))
            return events
        if not self._timeline:
            return events
        phases = self._phases
        last = len(phases) - 1
        index, started = self._phase_index, self._phase_started
        changed = False
        while True:
            duration = phases[index][0].duration
            if duration is None or (index == last and not self.scenario.loop):
                break
            if now - started < duration:
                break
            started += duration
            index = 0 if index == last else index + 1
            changed = True
            cycle = sum(p.duration or 0.0 for p, _ in phases)
            if index == 0 and cycle > 0 and now - started >= cycle:
                started += (now - started) // cycle * cycle  # skip whole idle cycles
        if changed:
            self._enter(index, started)
            events.append(
                Event("phase", f"phase {phases[index][0].name} begins", phases[index][0].name)
            )
        return events

    def tick(self) -> None:
        """Advance phases and ttl without a request (the addon calls this on a timer)."""
        with self._lock:
            events = self._advance(self._clock())
        for event in events:
            self._emit(event)

    def expires_in(self) -> float | None:
        """Seconds until the scenario's ttl reverts it to passthrough (None: no ttl)."""
        with self._lock:
            if self._expires is None:
                return None
            return max(0.0, self._expires - self._clock())

    def next_change_in(self) -> float | None:
        """Seconds until the next phase boundary or ttl expiry (None: nothing scheduled)."""
        with self._lock:
            now = self._clock()
            candidates = []
            if self._expires is not None:
                candidates.append(self._expires - now)
            if self._timeline:
                phase = self._phases[self._phase_index][0]
                last = self._phase_index == len(self._phases) - 1
                if phase.duration is not None and not (last and not self.scenario.loop):
                    candidates.append(self._phase_started + phase.duration - now)
            return max(0.0, min(candidates)) if candidates else None

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _changed(self, kind: str) -> None:
        if self.on_change is not None:
            self.on_change(kind)

    # ------------------------------------------------------------------ shared state

    def use_clock(self, clock: Clock) -> None:
        """Count time with ``clock`` from now on (shared state: one clock for all replicas);
        the phase clock, ttl and apply time keep their distance from now."""
        with self._lock:
            shift = clock() - self._clock()
            self._clock = clock
            self.applied_at += shift
            self._phase_started += shift
            if self._expires is not None:
                self._expires += shift

    def timeline_state(self) -> tuple[int, float, float | None]:
        """(active phase index, when it started, when the ttl runs out) on the engine's clock."""
        with self._lock:
            return self._phase_index, self._phase_started, self._expires

    def set_timeline(self, index: int, started: float, expires: float | None) -> None:
        """Adopt another replica's timeline (the same clock): entering another phase or
        a later start of this one clears the phase's counters, as a jump would."""
        with self._lock:
            if not 0 <= index < len(self._phases):
                return
            if index != self._phase_index or started != self._phase_started:
                self._enter(index, started)
            self._expires = expires

    def matching(self, req: RequestView) -> list[tuple[int, RuleState]]:
        """The rules of the active phase that match ``req`` (with their place in it), in
        order, after the timeline moves on to now ([] while paused). Counts nothing: shared
        state counts them."""
        with self._lock:
            events = self._advance(self._clock()) if self._expires or self._timeline else ()
            states = [] if self.paused else self._phases[self._phase_index][1]
        for event in events:
            self._emit(event)
        if not states:
            return []
        facts = _Facts(req)
        path = facts.path
        kinds = KINDS_AT[point_of(req)]
        return [
            (i, s)
            for i, s in enumerate(states)
            if s.kind in kinds and path.startswith(s.path_prefix) and _holds(s.checks, facts)
        ]

    def body_could_decide(self, req: RequestView) -> bool:
        """True when a rule of the active phase matches the head and has body conditions."""
        with self._lock:
            return self._body_could_decide(req)

    def count_shared(self, tried: Sequence[tuple[RuleState, int, int]], fired: bool) -> None:
        """Count one request decided by shared state: each rule it matched, with the
        phase's seen and injected counts the store returned (kept, so that deciding here
        while the store is away carries on from them); ``fired``: the last one fired."""
        with self._lock:
            self.requests += 1
            for state, seen, injected in tried:
                state.total_seen += 1
                state.seen, state.injected = seen, injected
            if fired and tried:
                tried[-1][0].total_injected += 1
                self.injected += 1

    # ------------------------------------------------------------------ deciding

    def decide(self, req: RequestView) -> Decision | None:
        """Select the rule that fires for ``req`` (counting it), or None: untouched."""
        with self._lock:
            events = self._advance(self._clock()) if self._expires or self._timeline else ()
            decision = self._count(req)
        for event in events:
            self._emit(event)
        return decision

    def decide_without_body(self, req: RequestView) -> tuple[bool, Decision | None]:
        """Decide from the request head alone, for a body that should stream.

        Returns ``(False, None)``, counting nothing, when a rule of the active phase could
        match but needs the body to tell; else ``(True, decision)`` exactly as :meth:`decide`.
        """
        with self._lock:
            events = self._advance(self._clock()) if self._expires or self._timeline else ()
            if self._body_could_decide(req):
                decided, decision = False, None
            else:
                decided, decision = True, self._count(req)
        for event in events:
            self._emit(event)
        return decided, decision

    def could_match(self, req: RequestView, *, head_only: bool = False) -> bool:
        """True when a rule of any phase matches ``req`` (``head_only``: its head, the body
        conditions aside). Counts nothing: ``--workers`` asks the coordinator's engine to
        decide only for requests this says a rule could match."""
        facts = _Facts(req)
        path = facts.path
        for state in self._all:
            if not path.startswith(state.path_prefix):
                continue
            if _holds(state.head_checks if head_only else state.checks, facts):
                return True
        return False

    def decides_at(self, point: str) -> bool:
        """True when a rule of any phase is decided at ``point`` beyond those decided at
        every request: the addon asks the engine at a CONNECT or a handshake only then."""
        kinds = KINDS_AT[point] - {"request"}
        return any(state.kind in kinds for state in self._all)

    def count_unmatched(self, n: int) -> None:
        """Count ``n`` requests no rule could match (decided elsewhere: ``--workers``)."""
        with self._lock:
            self.requests += n

    def count_asked(self) -> int:
        """Count a request given the faults it asked for (``request_faults``, see
        :mod:`chaosproxy.core.asked`): a request and an injection, no rule's. Returns how
        many such requests there were since the scenario was applied (its match number)."""
        with self._lock:
            self.requests += 1
            self.injected += 1
            self.asked += 1
            return self.asked

    def _body_could_decide(self, req: RequestView) -> bool:
        """True when a rule of the active phase matches the head and has body conditions."""
        if self.paused:
            return False
        facts = _Facts(req)
        kinds = KINDS_AT[point_of(req)]
        return any(
            state.needs_body and state.kind in kinds and _holds(state.head_checks, facts)
            for state in self._phases[self._phase_index][1]
        )

    def _count(self, req: RequestView) -> Decision | None:
        self.requests += 1
        decision = None if self.paused else self._select(req)
        if decision is not None:
            self.injected += 1
        return decision

    def _select(self, req: RequestView) -> Decision | None:
        states = self._phases[self._phase_index][1]
        if not states:
            return None
        facts = _Facts(req)
        path = facts.path
        kinds = KINDS_AT[point_of(req)]
        for state in states:
            if state.kind not in kinds:
                continue
            if not path.startswith(state.path_prefix) or not _holds(state.checks, facts):
                continue
            state.seen += 1
            state.total_seen += 1
            trial = self._trial(state, req, state.seen, dry_run=False)
            if trial.failed is not None:
                continue
            state.injected += 1
            state.total_injected += 1
            return trial.decision()
        return None

    def _trial(self, state: RuleState, req: RequestView, n: int, *, dry_run: bool) -> Trial:
        """Run ``state``'s selection steps for a request that matched it (match #``n``)."""
        trial = Trial(state, req, n, self.seed, self._clock, dry_run)
        for step in state.steps:
            if not step.passes(trial):
                trial.failed = step
                break
        return trial

    def explain(self, req: RequestView) -> list[Verdict]:
        """What each rule of the active phase would do with ``req`` next. The timeline and
        ttl first move on to now, as :meth:`tick` would; then the rules are tried as a dry
        run, which changes no counter, attempt or rate window."""
        with self._lock:
            events = self._advance(self._clock()) if self._expires or self._timeline else ()
            states = self._phases[self._phase_index][1]
            facts = _Facts(req)
            verdicts: list[Verdict] = []
            winner: str | None = None
            for state in states:
                verdicts.append(self._verdict(state, facts, winner))
                if verdicts[-1].fires:
                    winner = state.name
        for event in events:
            self._emit(event)
        return verdicts

    def _verdict(self, state: RuleState, facts: _Facts, winner: str | None) -> Verdict:
        rule = state.rule

        def out(fires: bool, reason: str) -> Verdict:
            return Verdict(state.name, state.phase, fires, reason, rule.describe())

        if state.kind not in KINDS_AT[point_of(facts.req)]:
            where = _DECIDED_AT[state.kind]
            return out(False, f"not decided here: a {state.kind}-time rule is decided {where}")
        why = _first_failure(state.checks, facts)
        if why is not None:
            return out(False, f"does not match: {why}")
        if winner is not None:
            return out(False, f"matches, but rule {winner!r} fires first")
        if self.paused:
            return out(False, "matches, but injection is paused")
        trial = self._trial(state, facts.req, state.seen + 1, dry_run=True)
        if trial.failed is not None:
            return out(False, f"matches, but {trial.failed.why(trial)}")
        chance = f", draw below probability {rule.probability:g}" if rule.probability < 1 else ""
        return out(True, f"matches (match #{trial.n}{chance}): fires")

    # ------------------------------------------------------------------ reporting

    def rule_states(self) -> Iterator[RuleState]:
        return iter(self._all)

    def stats(self) -> dict[str, Any]:
        """Counters since the scenario was applied (or reset), as the control API shows them."""
        with self._lock:
            return {
                "scenario": self.scenario.label,
                "seed": self.seed,
                "seed_source": self.seed_source,
                "phase": self.phase,
                "paused": self.paused,
                "requests": self.requests,
                "injected": self.injected,
                "rules": [
                    {
                        "name": s.name,
                        "phase": s.phase,
                        "seen": s.total_seen,
                        "injected": s.total_injected,
                        "fault": s.rule.describe(),
                    }
                    for s in self._all
                ],
            }


def _first_header(req: RequestView) -> Callable[[str], str | None]:
    def get(name: str) -> str | None:
        values = req.header(name)
        return values[0] if values else None

    return get
