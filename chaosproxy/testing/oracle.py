"""The resilience oracle: assertions about how a client behaved, from what the proxy saw.

The proxy records every request it handles (time, method, URL, request identity, the rule
that fired, the outcome and status). :class:`Calls` wraps those records and checks a
client's retry policy and circuit breaker against them::

    calls = proxy.calls.matching(path="/v1/forecast/*")
    calls.expect_attempts(3)                              # every logical request tried 3 times
    calls.expect_backoff(min_delay=0.1, max_delay=2, growing=True, jittered=True)
    calls.expect_retry_after()                            # waited as Retry-After said
    calls.expect_no_retry_of_non_idempotent()
    calls.expect_breaker(fail_max=5, reset_timeout=1.0)   # inferred from the traffic

A failed expectation raises :class:`ResilienceError` (an AssertionError) that says what
was expected and what was seen, call by call with timestamps. Pure Python: the records
may come from ``ChaosProxy.decisions``, ``GET /decisions`` or a ``--decision-log`` file.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, overload
from urllib.parse import urlsplit

#: Methods that may be retried without an Idempotency-Key (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class CallRecord(Protocol):
    """What the oracle reads from one record of the proxy's decision log."""

    @property
    def time(self) -> float:
        """Wall-clock arrival at the proxy (seconds since the epoch)."""

    @property
    def duration(self) -> float:
        """Seconds from arrival until the client had its answer (or lost it)."""

    @property
    def method(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def request_key(self) -> str:
        """Identity shared by the retries of one logical request."""

    @property
    def rule(self) -> str | None:
        """The rule that fired; None when the request passed untouched."""

    @property
    def outcome(self) -> str:
        """``response``, ``truncated``, ``reset``, ``closed``, ``client_disconnected`` or
        ``error``."""

    @property
    def status(self) -> int | None:
        """The status the client received, if it received one."""


class ResilienceError(AssertionError):
    """An expectation about the client's behaviour that the traffic does not meet."""


def is_failure(call: CallRecord) -> bool:
    """A call the client must treat as failed: no answer, or a 5xx or 429 answer."""
    if call.outcome != "response" or call.status is None:
        return True
    return call.status >= 500 or call.status == 429


def retry_after_of(call: CallRecord) -> float | None:
    """The Retry-After (seconds) the client received with this call, when recorded."""
    value = getattr(call, "retry_after", None)
    return float(value) if value is not None else None


def _end(call: CallRecord) -> float:
    return call.time + call.duration


def _path(call: CallRecord) -> str:
    return urlsplit(call.url).path


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if abs(value) < 1 else f"{value:.2f}s"


@dataclass(frozen=True)
class BreakerEvent:
    """A breaker state inferred from the traffic, from ``time`` on."""

    state: str
    """``closed``, ``open`` or ``half-open``."""
    time: float
    why: str


class Calls(Sequence[Any]):
    """Requests the proxy saw, oldest first, with expectations about the client's behaviour."""

    def __init__(self, records: Iterable[CallRecord], origin: float | None = None) -> None:
        self._calls: list[Any] = sorted(records, key=lambda c: c.time)
        self.origin = (
            origin if origin is not None else (self._calls[0].time if self._calls else time.time())
        )

    # ------------------------------------------------------------------ sequence

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Calls: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Calls(self._calls[index], self.origin)
        return self._calls[index]

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._calls)

    def __repr__(self) -> str:
        return f"<Calls: {len(self)} requests>\n{self.describe()}"

    # ------------------------------------------------------------------ selecting

    def where(self, predicate: Callable[[Any], bool]) -> Calls:
        """The calls for which ``predicate`` holds."""
        return Calls([c for c in self._calls if predicate(c)], self.origin)

    def matching(self, path: str | None = None, method: str | None = None) -> Calls:
        """The calls whose path matches the glob ``path`` and whose method is ``method``."""

        def keep(c: Any) -> bool:
            if method is not None and c.method.upper() != method.upper():
                return False
            return path is None or fnmatch.fnmatchcase(_path(c), path)

        return self.where(keep)

    def during(self, start: float, end: float) -> Calls:
        """The calls that arrived between wall-clock ``start`` and ``end`` (e.g. the calls
        one operation of the app made: the attempts of exactly one logical request)."""
        return self.where(lambda c: start <= c.time <= end)

    @property
    def injected(self) -> Calls:
        """The calls a rule fired for."""
        return self.where(lambda c: c.rule is not None)

    @property
    def failures(self) -> Calls:
        return self.where(is_failure)

    def by_request(self) -> dict[str, Calls]:
        """Attempts of each logical request, in order of first attempt.

        Attempts share the request's identity (its Idempotency-Key, else method, URL and
        body), and a success ends a logical request: the same request asked again after
        a success is a new one (keyed ``<identity>#2``, ``#3``...). A request given up
        after a failure and asked again later looks like one more retry of it; give
        each logical request its own Idempotency-Key where that matters.
        """
        groups: dict[str, list[Any]] = {}
        current: dict[str, str] = {}
        for call in self._calls:
            identity = call.request_key
            key = current.get(identity)
            if key is None:
                n = sum(1 for k in groups if k == identity or k.startswith(f"{identity}#"))
                key = identity if n == 0 else f"{identity}#{n + 1}"
                groups[key] = []
            groups[key].append(call)
            if is_failure(call):
                current[identity] = key
            else:
                current.pop(identity, None)
        return {key: Calls(calls, self.origin) for key, calls in groups.items()}

    def attempts(self) -> dict[str, int]:
        """How many times each logical request was tried."""
        return {key: len(calls) for key, calls in self.by_request().items()}

    # ------------------------------------------------------------------ showing

    def line(self, call: Any) -> str:
        """One call as a timeline line: clock time, offset, request, decision, outcome."""
        offset = call.time - self.origin
        status = f"{call.status}" if call.status is not None else "-"
        outcome = status if call.outcome == "response" else f"{call.outcome}"
        decision = f"rule {call.rule}" if call.rule else "passed through"
        ra = retry_after_of(call)
        extra = f", Retry-After {ra:g}s" if ra is not None else ""
        return (
            f"{_clock(call.time)} (+{offset:7.3f}s) {call.method} {call.url} -> {outcome} "
            f"in {_seconds(call.duration)} [{decision}{extra}]"
        )

    def describe(self, calls: Iterable[Any] | None = None, limit: int = 60) -> str:
        chosen = list(self._calls if calls is None else calls)
        lines = [f"  {self.line(c)}" for c in chosen[:limit]]
        if len(chosen) > limit:
            lines.append(f"  ... and {len(chosen) - limit} more")
        return "\n".join(lines) if lines else "  (no requests)"

    def _fail(self, expected: str, seen: str, calls: Iterable[Any] | None = None) -> NoReturn:
        raise ResilienceError(
            f"expected: {expected}\nseen:     {seen}\ntraffic through the proxy:\n"
            + self.describe(calls)
        )

    # ------------------------------------------------------------------ attempts

    def expect_attempts(
        self,
        exactly: int | None = None,
        *,
        at_least: int | None = None,
        at_most: int | None = None,
    ) -> dict[str, int]:
        """Every logical request was tried ``exactly`` times (or within the bounds)."""
        if exactly is not None:
            at_least = at_most = exactly
        if at_least is None and at_most is None:
            raise ValueError("give exactly, at_least or at_most")
        if not self._calls:
            self._fail("at least one request", "no requests at all")
        counts = self.attempts()
        for key, n in counts.items():
            if (at_least is not None and n < at_least) or (at_most is not None and n > at_most):
                if at_least == at_most:
                    want = _attempts(at_least or 0)
                elif at_most is None:
                    want = f"at least {_attempts(at_least or 0)}"
                elif not at_least:
                    want = f"at most {_attempts(at_most)}"
                else:
                    want = f"between {at_least} and {at_most} attempts"
                first = self.by_request()[key][0]
                self._fail(
                    f"{want} per logical request",
                    f"{_attempts(n)} of {first.method} {first.url} ({key})",
                    self.by_request()[key],
                )
        return counts

    # ------------------------------------------------------------------ backoff

    def gaps(self) -> dict[str, list[float]]:
        """Per logical request, the waits between one attempt's answer and the next attempt."""
        out: dict[str, list[float]] = {}
        for key, calls in self.by_request().items():
            out[key] = [b.time - _end(a) for a, b in zip(calls, calls[1:], strict=False)]
        return out

    def expect_backoff(
        self,
        *,
        min_delay: float = 0.0,
        max_delay: float | None = None,
        growing: bool = False,
        jittered: bool = False,
        tolerance: float = 0.05,
    ) -> dict[str, list[float]]:
        """Retries waited between ``min_delay`` and ``max_delay`` seconds; with ``growing``
        each wait is at least the previous one; with ``jittered`` the waits at the same
        retry differ between requests. ``tolerance`` (seconds) absorbs timer slack."""
        gaps = {k: g for k, g in self.gaps().items() if g}
        if not gaps:
            self._fail("retries to measure backoff on", "no logical request was retried")
        groups = self.by_request()
        for key, waits in gaps.items():
            calls = groups[key]
            for i, wait in enumerate(waits):
                pair = calls[i : i + 2]
                if wait < min_delay - tolerance:
                    self._fail(
                        f"each retry to wait at least {_seconds(min_delay)}",
                        f"retry {i + 1} of {calls[0].method} {calls[0].url} came "
                        f"{_seconds(wait)} after the previous answer",
                        pair,
                    )
                if max_delay is not None and wait > max_delay + tolerance:
                    self._fail(
                        f"each retry to wait at most {_seconds(max_delay)}",
                        f"retry {i + 1} of {calls[0].method} {calls[0].url} came "
                        f"{_seconds(wait)} after the previous answer",
                        pair,
                    )
            if growing:
                for i in range(1, len(waits)):
                    if waits[i] < waits[i - 1] - tolerance:
                        self._fail(
                            "growing waits between retries",
                            f"{calls[0].method} {calls[0].url} waited "
                            + ", then ".join(_seconds(w) for w in waits),
                            calls,
                        )
        if jittered:
            by_index: dict[int, list[float]] = {}
            for waits in gaps.values():
                for i, wait in enumerate(waits):
                    by_index.setdefault(i, []).append(wait)
            comparable = {i: w for i, w in by_index.items() if len(w) >= 2}
            if not comparable:
                self._fail(
                    "several retried requests to compare their waits (jitter)",
                    f"{len(gaps)} retried request(s)",
                )
            spreads = {i: max(w) - min(w) for i, w in comparable.items()}
            if all(spread < 0.002 for spread in spreads.values()):
                waits_0 = comparable[min(comparable)]
                self._fail(
                    "jittered waits (retries of different requests wait different times)",
                    "the same wait every time: "
                    + ", ".join(_seconds(w) for w in waits_0)
                    + f" (spread {_seconds(max(spreads.values()))})",
                )
        return gaps

    # ------------------------------------------------------------------ Retry-After

    def expect_retry_after(
        self,
        seconds: float | None = None,
        *,
        slack: float | None = None,
        cap: float | None = None,
        tolerance: float = 0.05,
    ) -> int:
        """After an answer with Retry-After, the same request was not retried sooner (and,
        with ``slack``, not later than Retry-After + slack). ``cap``: the client waits at
        most that long whatever the header says. ``seconds`` stands in for records that
        do not carry the header. Returns how many retries were checked."""
        checked = 0
        for calls in self.by_request().values():
            for prev, nxt in zip(calls, calls[1:], strict=False):
                wanted = retry_after_of(prev)
                if wanted is None and is_failure(prev):
                    wanted = seconds
                if wanted is None:
                    continue
                if cap is not None:
                    wanted = min(wanted, cap)
                checked += 1
                wait = nxt.time - _end(prev)
                if wait < wanted - tolerance:
                    self._fail(
                        f"a retry no sooner than Retry-After ({_seconds(wanted)})",
                        f"{nxt.method} {nxt.url} retried {_seconds(wait)} after the answer",
                        [prev, nxt],
                    )
                if slack is not None and wait > wanted + slack + tolerance:
                    self._fail(
                        f"a retry within {_seconds(slack)} of Retry-After ({_seconds(wanted)})",
                        f"{nxt.method} {nxt.url} retried {_seconds(wait)} after the answer",
                        [prev, nxt],
                    )
        if not checked:
            self._fail(
                "a retry after an answer carrying Retry-After",
                "none: no such answer was retried",
            )
        return checked

    # ------------------------------------------------------------------ idempotency

    def expect_no_retry_of_non_idempotent(
        self, allow: Iterable[str] = (), *, with_idempotency_key: bool = True
    ) -> None:
        """Requests with a non-idempotent method (POST, PATCH) were sent once each, unless
        the method is in ``allow`` or (``with_idempotency_key``) they carried an
        Idempotency-Key."""
        allowed = {m.upper() for m in allow} | IDEMPOTENT_METHODS
        for key, calls in self.by_request().items():
            first = calls[0]
            if len(calls) < 2 or first.method.upper() in allowed:
                continue
            if with_idempotency_key and key.lower().startswith(("idem:", "idempotency-key")):
                continue
            self._fail(
                f"no retry of non-idempotent {first.method} requests without an Idempotency-Key",
                f"{first.method} {first.url} sent {len(calls)} times",
                calls,
            )

    # ------------------------------------------------------------------ circuit breaker

    def breaker(
        self,
        *,
        fail_max: int,
        reset_timeout: float,
        failure: Callable[[Any], bool] = is_failure,
        tolerance: float = 0.1,
    ) -> list[BreakerEvent]:
        """The breaker's states as the traffic shows them. A breaker (pybreaker semantics)
        opens on the ``fail_max``-th consecutive failure, lets no call through for
        ``reset_timeout``, then lets one probe through (half-open): its success closes the
        breaker, its failure opens it again. Raises ResilienceError when the traffic
        contradicts that: calls while open, a second call during a probe."""
        events = [BreakerEvent("closed", self.origin, "start")]
        state = "closed"
        streak = 0
        opened = 0.0
        probe: Any = None
        for call in self._calls:
            if state == "open":
                waited = call.time - opened
                if waited < reset_timeout - tolerance:
                    self._fail(
                        f"no calls for {_seconds(reset_timeout)} while the breaker is open "
                        f"(from {_clock(opened)})",
                        f"a call {_seconds(waited)} after it opened",
                        self._around(call),
                    )
                state, probe = "half-open", call
                events.append(
                    BreakerEvent("half-open", call.time, f"probe after {_seconds(waited)}")
                )
            elif state == "half-open":
                if call.time < _end(probe) - 0.001:
                    self._fail(
                        "a single probe while the breaker is half-open",
                        f"a second call at {_clock(call.time)} while the probe of "
                        f"{_clock(probe.time)} was still running",
                        self._around(call),
                    )
                state = "closed"
                streak = 0
                events.append(BreakerEvent("closed", _end(probe), "probe succeeded"))
            if state == "half-open":
                if failure(call):
                    state, opened = "open", _end(call)
                    events.append(BreakerEvent("open", opened, "probe failed"))
                continue
            if failure(call):
                streak += 1
                if streak >= fail_max:
                    state, opened = "open", _end(call)
                    events.append(BreakerEvent("open", opened, f"{streak} failures in a row"))
                    streak = 0
            else:
                streak = 0
        if state == "half-open" and not failure(probe):
            events.append(BreakerEvent("closed", _end(probe), "probe succeeded"))
        return events

    def _around(self, call: Any, before: int = 8) -> list[Any]:
        index = self._calls.index(call)
        return self._calls[max(0, index - before) : index + 1]

    def expect_breaker(
        self,
        *,
        fail_max: int,
        reset_timeout: float,
        states: Sequence[str] | None = None,
        failure: Callable[[Any], bool] = is_failure,
        tolerance: float = 0.1,
    ) -> list[BreakerEvent]:
        """The traffic is consistent with such a breaker; with ``states``, the inferred
        states include that sequence in order (``["closed", "open", "half-open", "closed"]``)."""
        events = self.breaker(
            fail_max=fail_max, reset_timeout=reset_timeout, failure=failure, tolerance=tolerance
        )
        if states is not None:
            seen = [e.state for e in events]
            if not _in_order(list(states), seen):
                self._fail(
                    "breaker states " + " -> ".join(states),
                    " -> ".join(f"{e.state} at {_clock(e.time)} ({e.why})" for e in events),
                )
        return events

    def expect_breaker_opened(self, *, fail_max: int, within: float | None = None) -> float:
        """Calls stopped after ``fail_max`` consecutive failures: no call followed the
        opening one (for at least ``within`` seconds, if given). Returns when it opened."""
        streak = 0
        for i, call in enumerate(self._calls):
            streak = streak + 1 if is_failure(call) else 0
            if streak == fail_max:
                rest = self._calls[i + 1 :]
                opened = _end(call)
                early = [c for c in rest if within is None or c.time - opened < within]
                if early:
                    self._fail(
                        f"no calls after {fail_max} failures in a row (breaker open"
                        + (f" for {_seconds(within)})" if within is not None else ")"),
                        f"{len(early)} more call(s), the first "
                        f"{_seconds(early[0].time - opened)} after it opened",
                        self._around(early[0], fail_max + 1),
                    )
                return opened
        self._fail(
            f"{fail_max} failures in a row (to open the breaker)",
            f"at most {_longest_streak(self._calls)} in a row",
        )


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _longest_streak(calls: Sequence[Any]) -> int:
    best = streak = 0
    for call in calls:
        streak = streak + 1 if is_failure(call) else 0
        best = max(best, streak)
    return best


def _in_order(wanted: list[str], seen: list[str]) -> bool:
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)
