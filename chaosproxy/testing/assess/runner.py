"""Run the battery: apply each experiment's scenario, trigger the client, collect what it did.

The proxy (a :class:`~chaosproxy.testing.api.ChaosProxy` in front of the upstream) records
every upstream call; a trigger makes the app under test do one logical call (a URL of
the app, a command, or a Python callable). Between samples that ended in failure a
healthy call closes what a client breaker counted (a success resets it), and waits for
an open breaker to let calls through again, so every sample starts from a closed breaker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from chaosproxy.testing.assess import experiments as battery
from chaosproxy.testing.assess import infer
from chaosproxy.testing.assess.model import (
    Assessment,
    Attempt,
    ExperimentResult,
    Outcome,
    Progress,
    Sample,
    Target,
    Tool,
)

if TYPE_CHECKING:
    from chaosproxy.core.decisions import DecisionRecord
    from chaosproxy.testing.api import ChaosProxy

BODY_EXCERPT = 200
#: how much longer than the hang cap the end of an assessment waits for calls left running
SETTLE_EXTRA_S = 5.0

logger = logging.getLogger("chaosproxy")
#: How long to wait, at most, for an open client breaker to let calls through again.
BREAKER_CAP_S = 60.0
#: Failed upstream calls after which a client that still calls has no breaker to speak of.
BREAKER_MAX_FAILURES = 30


class AssessError(Exception):
    """The assessment cannot go on (the app does not call the proxy, the trigger fails)."""


class Trigger(Protocol):
    """Makes the app under test do one logical upstream call; says how it ended."""

    def __call__(self) -> Outcome: ...

    def target(self, upstream: str, proxy_url: str) -> Target: ...


@dataclass
class UrlTrigger:
    """An endpoint of the app that calls the upstream (``GET /weather/berlin``)."""

    url: str
    method: str = "GET"
    body: str | None = None
    timeout: float = 60.0

    def __call__(self) -> Outcome:
        data = self.body.encode() if self.body is not None else None
        request = urllib.request.Request(self.url, data=data, method=self.method.upper())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP_PROXY
        start = time.monotonic()
        try:
            with opener.open(request, timeout=self.timeout) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except urllib.error.URLError as exc:  # its reason, without "<urlopen error ...>"
            return Outcome(duration_s=round(time.monotonic() - start, 4), error=str(exc.reason))
        except OSError as exc:
            return Outcome(duration_s=round(time.monotonic() - start, 4), error=str(exc))
        text = body[:BODY_EXCERPT].decode("utf-8", "replace")
        return Outcome(
            status=status, duration_s=round(time.monotonic() - start, 4), body_excerpt=text
        )

    def target(self, upstream: str, proxy_url: str) -> Target:
        return Target(
            "url", upstream, url=self.url, method=self.method.upper(), proxy_url=proxy_url
        )


@dataclass
class CommandTrigger:
    """A command run once per logical call; ``env`` says where the proxy is."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    method: str = "GET"

    def __call__(self) -> Outcome:
        env = {**os.environ, **self.env}
        start = time.monotonic()
        try:
            done = subprocess.run(
                list(self.argv),
                env=env,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Outcome(duration_s=round(time.monotonic() - start, 4), error="timed out")
        except OSError as exc:
            raise AssessError(f"cannot run {self.argv[0]!r}: {exc}") from exc
        text = (done.stdout or done.stderr)[:BODY_EXCERPT].decode("utf-8", "replace")
        return Outcome(
            exit_code=done.returncode,
            duration_s=round(time.monotonic() - start, 4),
            body_excerpt=text,
        )

    def target(self, upstream: str, proxy_url: str) -> Target:
        return Target(
            "command",
            upstream,
            command=list(self.argv),
            method=self.method.upper(),
            proxy_url=proxy_url,
        )


def _answer_text(value: Any) -> str:
    """What a callable answered, as text to compare answers by: its ``.text`` (requests,
    httpx, Flask's test client), else its ``.body`` or the value itself when that is text,
    bytes or JSON-like data (an app's own result object with a dict body)."""
    for candidate in (getattr(value, "text", None), getattr(value, "body", None), value):
        if isinstance(candidate, str):
            return candidate
        if isinstance(candidate, bytes):
            return candidate.decode("utf-8", "replace")
        if isinstance(candidate, dict | list):
            try:
                return json.dumps(candidate, sort_keys=True, default=str)
            except (TypeError, ValueError):
                return ""
    return ""


@dataclass
class CallableTrigger:
    """A Python callable (pytest): returns a status, an object with ``status_code`` or
    ``status``, or None; an exception it raises is a failed call. A call still running
    after ``timeout`` seconds is recorded as unanswered (its thread is left to finish)."""

    call: Callable[[], Any]
    method: str = "GET"
    timeout: float = 60.0
    _abandoned: list[threading.Thread] = field(default_factory=list, init=False, repr=False)

    def settle(self, timeout: float) -> int:
        """Wait (at most ``timeout`` s) for the calls left running past their ``timeout``
        to end, so none of them goes on calling the upstream after the assessment (in a
        pytest session: into the next test). Returns how many still run."""
        deadline = time.monotonic() + timeout
        for worker in self._abandoned:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._abandoned = [w for w in self._abandoned if w.is_alive()]
        return len(self._abandoned)

    def __call__(self) -> Outcome:
        start = time.monotonic()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = self.call()
            except BaseException as exc:  # the client's failure is an outcome here
                box["error"] = exc

        worker = threading.Thread(target=run, name="assess-trigger", daemon=True)
        worker.start()
        worker.join(self.timeout)
        took = round(time.monotonic() - start, 4)
        if worker.is_alive():
            self._abandoned.append(worker)
            return Outcome(duration_s=took, error=f"no answer within {self.timeout:g}s")
        if "error" in box:
            return Outcome(duration_s=took, error=repr(box["error"])[:BODY_EXCERPT])
        value = box.get("value")
        status = value if isinstance(value, int) else getattr(value, "status_code", None)
        if status is None:
            status = getattr(value, "status", None)
        return Outcome(
            status=status if isinstance(status, int) else None,
            exit_code=None if isinstance(status, int) else 0,
            duration_s=took,
            body_excerpt=_answer_text(value)[:BODY_EXCERPT],
        )

    def target(self, upstream: str, proxy_url: str) -> Target:
        name = getattr(self.call, "__qualname__", repr(self.call))
        return Target(
            "command", upstream, command=[name], method=self.method.upper(), proxy_url=proxy_url
        )


def _maybe_jittered(result: ExperimentResult) -> bool:
    """The waits of one attempt index differ across samples by more than a little: more
    samples will tell jitter from the machine's noise."""
    waits = [infer.gaps(infer.primary(s)) for s in result.samples]
    width = max((len(w) for w in waits), default=0)
    columns = [[w[k] for w in waits if len(w) > k] for k in range(width)]
    return any(max(c) - min(c) > infer.IMMEDIATE_S for c in columns if len(c) >= 2)


def _mean_duration(result: ExperimentResult) -> float:
    return sum(s.outcome.duration_s for s in result.samples) / max(1, len(result.samples))


def _fallback_body(result: ExperimentResult | None) -> str | None:
    """What the app answered (2xx) while the upstream failed: its fallback, if it has one."""
    for s in result.samples if result is not None else []:
        if infer.is_success(s.outcome.status, s.outcome.exit_code):
            return s.outcome.body_excerpt
    return None


def _ok(outcome: Outcome) -> bool:
    if outcome.error is not None:
        return False
    return infer.is_success(outcome.status, outcome.exit_code)


class Collector:
    """The proxy's decision records, as they come (thread-safe)."""

    def __init__(self, proxy: ChaosProxy, self_hops: frozenset[str] = frozenset()) -> None:
        self.proxy = proxy
        self.self_hops = self_hops
        self._cond = threading.Condition()
        self._records: list[DecisionRecord] = []
        self._unsubscribe = proxy.on_decision(self._add)

    def _add(self, record: DecisionRecord) -> None:
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()

    def close(self) -> None:
        self._unsubscribe()

    def since(self, mono: float) -> list[DecisionRecord]:
        with self._cond:
            return [r for r in self._records if r.monotonic >= mono]

    def settle(self, applied_at: float, timeout: float = 2.0) -> None:
        """Wait until every request the engine decided since ``applied_at`` is recorded."""
        engine = self.proxy.addon.engine
        addon = self.proxy.addon

        def done() -> bool:
            seen = sum(1 for r in self._records if r.monotonic >= applied_at)
            return not addon.in_flight and seen >= engine.requests

        with self._cond:
            self._cond.wait_for(done, timeout)

    def attempts(self, start: float, end: float) -> list[Attempt]:
        """The upstream calls that arrived between ``start`` and ``end`` (monotonic)."""
        found = []
        for r in sorted(self.since(start), key=lambda r: r.monotonic):
            if r.monotonic > end:
                continue
            if r.rule is None and urlsplit(r.url).netloc in self.self_hops:
                continue  # a forward-proxied call to our own reverse listener: counted there
            key = r.request_key[5:] if r.request_key.startswith("idem:") else None
            found.append(
                Attempt(
                    t_s=round(r.monotonic - start, 4),
                    method=r.method,
                    path=r.path,
                    status=r.status,
                    fault=r.fault,
                    duration_s=round(r.duration, 4),
                    idempotency_key=key,
                    outcome=r.outcome,
                )
            )
        return found


class Runner:
    """One assessment of the client behind ``trigger``, through ``proxy``."""

    def __init__(
        self,
        proxy: ChaosProxy,
        trigger: Trigger,
        *,
        upstream: str,
        quick: bool = False,
        seed: int = 1,
        on_progress: Callable[[Progress], None] | None = None,
        hang_cap_s: float = battery.HANG_CAP_S,
        breaker_cap_s: float = BREAKER_CAP_S,
        self_hops: frozenset[str] = frozenset(),
        proxy_url: str | None = None,
    ) -> None:
        self.proxy = proxy
        self.trigger = trigger
        self.upstream = upstream
        self.quick = quick
        self.seed = seed
        self.on_progress = on_progress or (lambda _p: None)
        self.hang_cap_s = hang_cap_s
        self.breaker_cap_s = breaker_cap_s
        self.self_hops = self_hops
        self.proxy_url = proxy_url or proxy.url
        self.results: dict[str, ExperimentResult] = {}
        self.healed_at_s: float | None = None
        self._applied_at = 0.0

    # ------------------------------------------------------------------ steps

    def _apply(self, scenario: dict[str, Any]) -> None:
        self.proxy.resume()
        self.proxy.apply(scenario, seed=self.seed)
        self._applied_at = time.monotonic()

    def _sample(self, collector: Collector, index: int, origin: float) -> Sample:
        start = time.monotonic()
        outcome = self.trigger()
        collector.settle(self._applied_at)
        attempts = collector.attempts(start, time.monotonic())
        return Sample(index, outcome, attempts, started_s=round(start - origin, 4))

    def _heal(self, collector: Collector) -> None:
        """A healthy call (a success resets a breaker's count); wait out an open breaker."""
        self._apply(battery.baseline().scenario)
        deadline = time.monotonic() + self.breaker_cap_s
        while True:
            sample = self._sample(collector, 0, 0.0)
            if sample.attempts:
                return
            if time.monotonic() > deadline:
                raise AssessError(
                    f"the client made no upstream call for {self.breaker_cap_s:g}s after a failure"
                    " (an open breaker that never lets a call through?)"
                )
            time.sleep(0.1)

    def _run_sampled(self, exp: battery.Experiment, collector: Collector) -> ExperimentResult:
        result = ExperimentResult(exp.name, exp.title, exp.scenario)
        origin = time.monotonic()
        for i in range(exp.samples):
            self.on_progress(Progress(exp.name, exp.title, i + 1, exp.samples))
            self._apply(exp.scenario)
            sample = self._sample(collector, i, origin)
            result.samples.append(sample)
            if exp.name != "baseline":
                # whatever the client counted as a failure (a malformed 200 too), a
                # success resets; an open breaker is waited out
                self._heal(collector)
        more = exp.params.get("more_if_jittered", 0)
        if more and _maybe_jittered(result) and _mean_duration(result) < exp.params["more_below_s"]:
            for i in range(exp.samples, exp.samples + more):
                self.on_progress(Progress(exp.name, exp.title, i + 1, exp.samples + more))
                self._apply(exp.scenario)
                result.samples.append(self._sample(collector, i, origin))
                self._heal(collector)
        result.findings = infer.experiment_findings(result)
        result.findings.update({k: v for k, v in exp.params.items() if not k.startswith("more_")})
        return result

    def _run_breaker(self, exp: battery.Experiment, collector: Collector) -> ExperimentResult:
        """Fail until the client stops calling; wait for its probe(s); heal; wait again."""
        result = ExperimentResult(exp.name, exp.title, exp.scenario)
        origin = time.monotonic()
        self._apply(exp.scenario)
        samples: list[Sample] = []

        def trigger() -> Sample:
            s = self._sample(collector, len(samples), origin)
            samples.append(s)
            self.on_progress(Progress(exp.name, exp.title, len(samples), 0))
            return s

        def poll_until(
            condition: Callable[[Sample], bool], cap: float, first_interval: float = 0.05
        ) -> bool:
            began = time.monotonic()
            while time.monotonic() - began < cap:
                if condition(trigger()):
                    return True
                elapsed = time.monotonic() - began
                time.sleep(min(0.25, max(first_interval, elapsed / 40)))
            return False

        failures = 0
        opened = False
        while failures < BREAKER_MAX_FAILURES:
            s = trigger()
            if not s.attempts and failures:
                opened = True
                break
            failures += len(s.attempts)
        if opened:
            # half-open: the first call let through while the upstream still fails
            if poll_until(lambda s: bool(s.attempts), self.breaker_cap_s):
                poll_until(lambda s: not s.attempts, 5.0, first_interval=0.0)
            self._apply(battery.baseline().scenario)
            self.healed_at_s = round(time.monotonic() - origin, 4)
            poll_until(lambda s: bool(s.attempts) and _ok(s.outcome), self.breaker_cap_s)
            trigger()  # closed again: this one goes through at once
        # keep every sample that reached the upstream, and the first of each silent run
        kept = [s for k, s in enumerate(samples) if s.attempts or k == 0 or samples[k - 1].attempts]
        for k, s in enumerate(kept):
            s.index = k
        result.samples = kept
        fit = infer.infer_breaker(kept, self.healed_at_s)
        result.findings = {
            **fit.findings,
            "triggers": len(samples),
            "healed_at_s": self.healed_at_s,
        }
        return result

    # ------------------------------------------------------------------ the whole run

    def run(self) -> Assessment:
        started = datetime.now(UTC)
        t0 = time.monotonic()
        collector = Collector(self.proxy, self.self_hops)
        try:
            for exp in battery.opening(self.quick):
                self._run(exp, collector)
                if exp.name == "baseline":
                    self._check_baseline()
            give_up = self.results["fail_until_give_up"]
            # Retry-After well above the longest first wait seen without it
            firsts = [g[0] for g in (infer.gaps(infer.primary(s)) for s in give_up.samples) if g]
            first_wait = max(firsts) if firsts else None
            retry_after_s = battery.retry_after_for(first_wait)
            method = getattr(self.trigger, "method", "GET")
            for exp in battery.rest(self.quick, method, retry_after_s, self.hang_cap_s):
                self._run(exp, collector)
        finally:
            collector.close()
            self._apply(battery.baseline().scenario)
            settle = getattr(self.trigger, "settle", None)
            if settle is not None and settle(self.hang_cap_s + SETTLE_EXTRA_S):
                logger.warning("assess: a call the client never finished still runs")
        baseline = self.results["baseline"].samples[0].outcome
        long = self.results.get("retry_after_long")
        policy, evidence = infer.infer_policy(
            self.results,
            retry_after_s=retry_after_s,
            retry_after_long_s=long.findings.get("retry_after_s") if long else None,
            hang_cap_s=self.hang_cap_s,
            baseline_body=baseline.body_excerpt,
            fallback_body=_fallback_body(self.results.get("fail_until_give_up")),
            healed_at_s=self.healed_at_s,
        )
        if self.quick:
            from chaosproxy.testing.assess.model import Evidence

            evidence["breaker"] = Evidence(0, "low", note="not probed (--quick)")
        from chaosproxy import __version__

        return Assessment(
            started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            duration_s=round(time.monotonic() - t0, 2),
            seed=self.seed,
            quick=self.quick,
            target=self.trigger.target(self.upstream, self.proxy_url),
            policy=policy,
            evidence=evidence,
            experiments=list(self.results.values()),
            tool=Tool("chaosproxy", str(__version__)),
        )

    def _run(self, exp: battery.Experiment, collector: Collector) -> None:
        if exp.kind == "breaker":
            result = self._run_breaker(exp, collector)
        else:
            result = self._run_sampled(exp, collector)
        self.results[exp.name] = result
        self.on_progress(
            Progress(exp.name, exp.title, len(result.samples), len(result.samples), done=True)
        )

    def _check_baseline(self) -> None:
        sample = self.results["baseline"].samples[0]
        if sample.outcome.error is not None and not sample.attempts:
            where = ""
            if isinstance(self.trigger, UrlTrigger):
                where = f"{self.trigger.method.upper()} {self.trigger.url}: "
            raise AssessError(
                f"the trigger failed with a healthy upstream: {where}{sample.outcome.error}"
                + (" (is the app listening there?)" if where else "")
            )
        if not sample.attempts:
            raise AssessError(
                "no upstream call reached the proxy during the healthy call: point the app's "
                f"upstream at {self.proxy_url} (the proxy), not at {self.upstream}"
            )


def assess(
    proxy: ChaosProxy,
    trigger: Trigger,
    *,
    upstream: str | None = None,
    quick: bool = False,
    seed: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    hang_cap_s: float = battery.HANG_CAP_S,
    self_hops: frozenset[str] = frozenset(),
    proxy_url: str | None = None,
) -> Assessment:
    """Run the battery through ``proxy`` (already started, in front of the upstream);
    ``proxy_url``: where the app must send its calls (default: the proxy's URL)."""
    if upstream is None:
        ups = proxy.settings.upstreams
        upstream = ups[0].url if ups else "(forward)"
    return Runner(
        proxy,
        trigger,
        upstream=upstream,
        quick=quick,
        seed=seed,
        on_progress=on_progress,
        hang_cap_s=hang_cap_s,
        self_hops=self_hops,
        proxy_url=proxy_url,
    ).run()
