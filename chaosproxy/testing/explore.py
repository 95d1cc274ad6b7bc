"""Fault-space exploration: the calls a test makes, the runs that fail each one, the tokens.

A test's upstream calls are told apart by their identity: method, route template (ids in
the path become ``{id}``) and body shape (the JSON keys, not their values), or, with a
``key`` (``header:NAME`` / ``query:NAME``), method, route and that key's value. A fault-free
recording lists the distinct identities in the order the test first made them; exploration
then runs the test once per (call x fault) of a menu, with only that call failing
(:class:`Run`); a run is reproduced by its replay token. The pytest side (items, recording
subprocess, report) is :mod:`chaosproxy.testing.explorer`; this module is pure and cheap
to import (the scenario model is imported only to build a run's scenario).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from chaosproxy.core.engine import RequestView
    from chaosproxy.core.scenario import Scenario

#: The fault menu, in the order runs are tried: name -> what the explored call gets.
MENU = ("503", "429", "reset", "hang", "malformed", "latency")
MENU_HELP = {
    "503": "an error 503 instead of the upstream's answer",
    "429": "a 429 with Retry-After",
    "reset": "the connection reset (TCP RST)",
    "hang": "no answer until the client gives up (at most `hang`, then closed)",
    "malformed": "the upstream's JSON answer with its syntax broken",
    "latency": "the upstream's answer, `latency` late",
}
#: Attempts that fail: every attempt of the call (``"all"``), or only the first N.
Attempts = int | str
DEFAULT_SEED = 1


@dataclass(frozen=True)
class Settings:
    """How the menu's faults are tuned, and which attempts of the explored call fail."""

    attempts: Attempts = "all"
    latency: str = "1s"
    hang: str = "30s"
    retry_after: int = 1
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "latency": self.latency,
            "hang": self.hang,
            "retry_after": self.retry_after,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Settings:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def check_settings(
    faults: object, attempts: object, key: object, where: str
) -> tuple[tuple[str, ...], Attempts, str | None]:
    """The menu, attempts and key of a marker or the command line (ValueError if bad)."""
    if faults is None:
        menu: tuple[str, ...] = MENU
    elif isinstance(faults, str) or not isinstance(faults, Iterable):
        raise ValueError(f"{where}: faults must be a list of names, e.g. faults=['503', 'reset']")
    else:
        menu = tuple(str(f) for f in faults)
        unknown = [f for f in menu if f not in MENU]
        if unknown or not menu:
            raise ValueError(
                f"{where}: unknown fault(s) {', '.join(unknown) or '(none given)'}; "
                f"the menu: {', '.join(MENU)}"
            )
    if attempts != "all" and (isinstance(attempts, bool) or not isinstance(attempts, int)):
        raise ValueError(f'{where}: attempts must be "all" or a whole number >= 1')
    if isinstance(attempts, int) and attempts < 1:
        raise ValueError(f'{where}: attempts must be "all" or a whole number >= 1')
    if key is not None:
        kind, _, name = str(key).partition(":")
        if kind not in ("header", "query") or not name.strip():
            raise ValueError(f"{where}: key {key!r} is not header:NAME or query:NAME")
    assert isinstance(attempts, (int, str))
    return menu, attempts, None if key is None else str(key)


# --------------------------------------------------------------------------- identities

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]{8,}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~]{16,}$")


def _is_id(segment: str) -> bool:
    if segment.isdigit() or _UUID.match(segment):
        return True
    has_digit = any(c.isdigit() for c in segment)
    return has_digit and bool(_HEX.match(segment) or _TOKEN.match(segment))


def route_template(path: str) -> str:
    """The path with its ids replaced: ``/orders/1234/items`` -> ``/orders/{id}/items``
    (digits, UUIDs, long hex or long tokens with digits count as ids)."""
    return "/".join("{id}" if _is_id(s) else s for s in path.split("/")) or "/"


def _json_shape(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}{_json_shape(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + (_json_shape(value[0]) if value else "") + "]"
    return ""


def body_shape(content_type: str, body: bytes) -> str:
    """What a request body looks like, without its values: ``{amount,card{number}}`` for
    JSON (keys, nested; the first item of arrays), ``form{a,b}``, ``bytes``, or ``""``."""
    if not body:
        return ""
    if "form-urlencoded" in content_type:
        keys = sorted({k for k, _ in parse_qsl(body.decode("latin-1"), keep_blank_values=True)})
        return "form{" + ",".join(keys) + "}"
    try:
        doc = json.loads(body)
    except ValueError:
        return "bytes"
    return _json_shape(doc) or "json"


@dataclass(frozen=True, order=True)
class Call:
    """One distinct upstream call of a test: method, route template, and body shape (or the
    value of the exploration's key)."""

    method: str
    route: str
    shape: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}" + (f" {self.shape}" if self.shape else "")

    def to_list(self) -> list[str]:
        return [self.method, self.route, self.shape]

    @classmethod
    def from_list(cls, values: Sequence[str]) -> Call:
        method, route, shape = values
        return cls(str(method), str(route), str(shape))


def identify(view: RequestView, key: str | None = None) -> Call:
    """The identity of one request, as exploration tells calls apart."""
    route = route_template(view.path)
    if key is not None:
        kind, _, name = key.partition(":")
        values = view.header(name.strip()) if kind == "header" else view.query(name.strip())
        return Call(view.method, route, f"{kind}:{name.strip()}={values[0] if values else ''}")
    types = view.header("content-type")
    return Call(view.method, route, body_shape(types[0] if types else "", view.body()))


def labels(calls: Sequence[Call]) -> dict[Call, str]:
    """Short names: ``POST /payments``, with the shape only where method + route repeat."""
    routes: dict[str, int] = {}
    for call in calls:
        routes[f"{call.method} {call.route}"] = routes.get(f"{call.method} {call.route}", 0) + 1
    return {
        c: c.id if routes[f"{c.method} {c.route}"] > 1 else f"{c.method} {c.route}" for c in calls
    }


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """One exploration run of a test: ``targets`` fail with ``fault`` (none: fault-free)."""

    nodeid: str
    """The test explored (without the exploration's parameter)."""
    targets: tuple[Call, ...] = ()
    names: tuple[str, ...] = ()
    """The targets' short names (see :func:`labels`)."""
    fault: str | None = None
    settings: Settings = field(default_factory=Settings)
    seed: int = DEFAULT_SEED
    #: set at collection: another test already explored these identities with this fault
    repeat_of: str | None = None

    @property
    def kind(self) -> str:
        return "baseline" if not self.targets else "single" if len(self.targets) == 1 else "pair"

    @property
    def id(self) -> str:
        """The pytest parameter id: ``explore: POST /payments x reset``."""
        if not self.targets:
            return "explore: no fault"
        return f"explore: {' + '.join(self.names)} x {self.fault}"

    @property
    def calls(self) -> str:
        return " + ".join(self.names)

    @property
    def identity(self) -> tuple[Any, ...]:
        """What a repeat has in common with the run it repeats."""
        return (tuple(t.id for t in self.targets), self.fault, self.settings)

    def fault_spec(self) -> dict[str, Any]:
        """The fault of the menu, as a scenario writes it."""
        s = self.settings
        menu: dict[str, dict[str, Any]] = {
            "503": {"type": "error", "status": 503},
            "429": {"type": "error", "status": 429, "headers": {"Retry-After": str(s.retry_after)}},
            "reset": {"type": "abort", "how": "reset"},
            "hang": {"type": "timeout", "after": s.hang, "then": "close"},
            "malformed": {"type": "malformed", "mode": "invalid_json"},
            "latency": {"type": "latency", "delay": s.latency, "on": "response"},
        }
        return menu[str(self.fault)]

    def scenario_dict(self) -> dict[str, Any]:
        """The scenario of this run; the explored calls alone reach it (:class:`Targeting`)."""
        if not self.targets:
            return {"name": "explore-no-fault", "rules": []}
        rule: dict[str, Any] = {"name": f"explore-{self.fault}", "fault": self.fault_spec()}
        if self.settings.attempts != "all":
            rule["per_request"] = {"times": int(self.settings.attempts)}
        return {"name": f"explore {self.calls} x {self.fault}", "rules": [rule]}

    def scenario(self) -> Scenario:
        from chaosproxy.core.scenario import load_data

        return load_data(self.scenario_dict(), "<explore>")

    # ------------------------------------------------------------------ tokens

    def token(self) -> str:
        """This run, as ``--chaos-replay`` takes it (compressed JSON, URL-safe base64)."""
        defaults = Settings().to_dict()
        tuned = {k: v for k, v in self.settings.to_dict().items() if v != defaults[k]}
        doc = [1, self.nodeid, self.fault, self.seed, [t.to_list() for t in self.targets], tuned]
        raw = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 9)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> Run:
        """The run a token names (ValueError if it is not one)."""
        try:
            raw = zlib.decompress(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            version, nodeid, fault, seed, targets, tuned = json.loads(raw)
            if version != 1:
                raise ValueError(f"version {version}")
            calls = tuple(Call.from_list(t) for t in targets)
            names = labels(calls)
            run = cls(
                nodeid=str(nodeid),
                targets=calls,
                names=tuple(names[c] for c in calls),
                fault=fault,
                seed=int(seed),
                settings=Settings.from_dict(tuned),
            )
        except (ValueError, TypeError, binascii.Error, zlib.error) as exc:
            raise ValueError(f"{token!r} is not a replay token ({exc})") from None
        if run.targets and run.fault not in MENU:
            raise ValueError(f"{token!r} is not a replay token (unknown fault {run.fault!r})")
        return run


def plan(
    nodeid: str,
    calls: Sequence[Call],
    menu: Sequence[str],
    settings: Settings,
    *,
    seed: int = DEFAULT_SEED,
    max_runs: int | None = None,
    depth: int = 1,
) -> tuple[list[Run], int]:
    """The runs of one test, fault-free first, then each call (in the order the test first
    made them) with each fault of the menu, then (depth 2) pairs of calls with the same
    fault; at most ``max_runs`` faulted runs. Returns the runs and how many the budget left
    out."""
    names = labels(calls)
    runs = [Run(nodeid, settings=settings, seed=seed)]
    wanted: list[Run] = [
        Run(nodeid, (c,), (names[c],), f, settings, seed) for c in calls for f in menu
    ]
    if depth >= 2:
        wanted += [
            Run(nodeid, (a, b), (names[a], names[b]), f, settings, seed)
            for i, a in enumerate(calls)
            for b in calls[i + 1 :]
            for f in menu
        ]
    budget = len(wanted) if max_runs is None else max(0, max_runs)
    return runs + wanted[:budget], max(0, len(wanted) - budget)


def singles_of(run: Run) -> list[Run]:
    """The single-call runs a pair depends on."""
    return [
        replace(run, targets=(t,), names=(n,)) for t, n in zip(run.targets, run.names, strict=True)
    ]


# --------------------------------------------------------------------------- on the proxy


class Targeting:
    """Wraps the proxy's decider: records each request's identity, and (for a run) lets only
    the explored calls reach the engine, so the run's rule fails them and nothing else."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.key: str | None = None
        self.targets: frozenset[Call] | None = None
        self.seen: list[Call] = []
        self.reached: set[Call] = set()
        #: False for a test exploration leaves alone: the inner decider as it is
        self.active = False

    def begin(self, targets: Iterable[Call] | None, key: str | None) -> None:
        """A new test: record from scratch; ``targets`` None lets every request through."""
        with self._lock:
            self.active = True
            self.key = key
            self.targets = None if targets is None else frozenset(targets)
            self.seen = []
            self.reached = set()

    def end(self) -> list[Call]:
        """The distinct calls of the test, in the order it first made them."""
        with self._lock:
            seen, self.targets, self.key, self.active = list(self.seen), None, None, False
        return seen

    def decide_early(self, view: Any) -> tuple[bool, Any]:
        if not self.active:
            return self.inner.decide_early(view)
        return False, None  # the body is part of the identity: read it whole first

    def decide(self, view: Any, request: Any) -> Any:
        if not self.active:
            return self.inner.decide(view, request)
        call = identify(view, self.key)
        with self._lock:
            if call not in self.seen:
                self.seen.append(call)
            targets = self.targets
            if targets is not None and call in targets:
                self.reached.add(call)
        if targets is not None and call not in targets:
            return None
        return self.inner.decide(view, request)


def first_line(text: str) -> str:
    """The first non-empty line of a failure's message, at most 200 characters."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= 200 else line[:197] + "..."
