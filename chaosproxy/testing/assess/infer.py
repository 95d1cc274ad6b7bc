"""Pure inference: what the proxy saw in each experiment -> the client's policy.

No sockets and no clock: every function reads :mod:`~chaosproxy.testing.assess.model`
samples (attempts with their times) and returns findings, policy items and the evidence
they rest on. The runner calls :func:`infer_policy` once the battery has run.
"""

from __future__ import annotations

import difflib
import math
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaosproxy.testing.assess.model import (
    Attempt,
    Backoff,
    Breaker,
    Confidence,
    Evidence,
    ExperimentResult,
    Policy,
    RetryAfter,
    Sample,
)

#: A wait shorter than this is "at once" (scheduling noise on a loaded machine).
IMMEDIATE_S = 0.02
#: Waits of one attempt index whose median lies above their least by more than
#: JITTER_ABS_S + JITTER_REL * median are jittered; below it, the machine's noise.
JITTER_ABS_S = 0.015
JITTER_REL = 0.02
#: Consecutive waits within this ratio of each other are "the same" (constant, or a cap).
FLAT_REL = 0.2


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def is_failure_status(status: int | None) -> bool:
    return status is None or status >= 500 or status == 429


def is_success(outcome_status: int | None, exit_code: int | None) -> bool:
    """The caller got a good answer: a 2xx from the app, or a command that exited 0."""
    if outcome_status is not None:
        return 200 <= outcome_status < 300
    return exit_code == 0


def primary(sample: Sample) -> list[Attempt]:
    """The attempts of the sample's main upstream request (method and path of the first)."""
    if not sample.attempts:
        return []
    first = sample.attempts[0]
    return [a for a in sample.attempts if a.method == first.method and a.path == first.path]


def gaps(attempts: Sequence[Attempt]) -> list[float]:
    """Waits between attempts: from the end of one (the client had its failure) to the next."""
    return [
        max(0.0, nxt.t_s - (prev.t_s + prev.duration_s))
        for prev, nxt in zip(attempts, attempts[1:], strict=False)
    ]


def confidence_of(samples: int, consistent: bool = True) -> Confidence:
    if samples >= 3 and consistent:
        return "high"
    if samples >= 2 or (samples == 1 and consistent):
        return "medium"
    return "low"


# ---------------------------------------------------------------------- attempts


def infer_attempts(counts: Sequence[int]) -> tuple[int | None, Evidence]:
    """The attempt count a client makes before giving up: the most common across samples."""
    counts = [c for c in counts if c > 0]
    if not counts:
        return None, Evidence(0, "low", note="no attempt reached the proxy")
    common, n = Counter(counts).most_common(1)[0]
    consistent = n == len(counts)
    note = ",".join(str(c) for c in counts)
    return common, Evidence(len(counts), confidence_of(len(counts), consistent), note=note)


# ---------------------------------------------------------------------- backoff


@dataclass(frozen=True)
class BackoffFit:
    backoff: Backoff
    evidence: Evidence
    waits_s: list[float]
    """The per-index waits the fit rests on (minimum across samples when jittered)."""


def _low_spread(column: Sequence[float]) -> float:
    """How far the typical wait lies above the least: the median less the minimum (of
    three or more; else the range). A busy machine only lengthens waits, now and then,
    which moves neither much; jitter spreads the draws below the median as well."""
    if len(column) >= 3:
        return statistics.median(column) - min(column)
    return max(column) - min(column)


def _jittered(columns: list[list[float]]) -> bool | None:
    """Jitter: in most attempt indexes the waits spread below their median beyond the
    machine's noise (needs two samples)."""
    spread = [(_low_spread(c), statistics.median(c)) for c in columns if len(c) >= 2]
    if not spread:
        return None
    wide = sum(1 for d, m in spread if d > JITTER_ABS_S + JITTER_REL * m)
    return wide >= max(1, math.ceil(len(spread) / 2))


def _floor(column: Sequence[float]) -> float:
    """The un-jittered wait under additive uniform jitter: the least of n draws lies
    1/(n+1) of the jitter above it, their median 1/2: extrapolate from those two."""
    if len(column) < 3:
        return min(column)
    n = len(column)
    low = min(column)
    return max(0.0, low - (statistics.median(column) - low) * 2 / (n - 1))


def _flat(values: Sequence[float]) -> bool:
    """Level: the largest within FLAT_REL (or the machine's noise) of the smallest."""
    low, high = min(values), max(values)
    return high - low <= IMMEDIATE_S or high <= low * (1 + FLAT_REL)


def _grows(before: Sequence[float], after: Sequence[float], jitter: bool | None) -> bool:
    """The waits of ``after`` (one attempt index, across samples) exceed those of ``before``:
    by FLAT_REL / 2 without jitter; with it, the medians by more than their jitter's reach
    below them (half of both)."""
    a, b = statistics.median(before), statistics.median(after)
    if not jitter:
        return b - a > IMMEDIATE_S and b > a * (1 + FLAT_REL / 2)
    return b - a > max(IMMEDIATE_S, (_low_spread(before) + _low_spread(after)) / 2)


def _exp_fit(values: Sequence[float]) -> tuple[float, float, float]:
    """Least squares of log(wait) on the index: (base, multiplier, relative error)."""
    xs = list(range(len(values)))
    ys = [math.log(max(v, 1e-3)) for v in values]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    base = math.exp(my - slope * mx)
    mult = math.exp(slope)
    err = statistics.fmean(abs(base * mult**x - v) / v for x, v in zip(xs, values, strict=True))
    return base, mult, err


def _lin_fit(values: Sequence[float]) -> tuple[float, float, float]:
    """Least squares of wait on the index: (first wait, increment, relative error)."""
    xs = list(range(len(values)))
    mx, my = statistics.fmean(xs), statistics.fmean(values)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    first = my - slope * mx
    err = statistics.fmean(abs(first + slope * x - v) / v for x, v in zip(xs, values, strict=True))
    return first, slope, err


def infer_backoff(per_sample: Sequence[Sequence[float]]) -> BackoffFit:
    """The backoff from the waits of several samples (one list of waits per sample).

    Jitter: the waits of one attempt index differ across samples beyond the machine's noise
    (needs two samples). The shape is fitted on the per-index median, or on the minimum
    when jittered (additive jitter only ever lengthens a wait). A first wait near zero
    followed by growing ones is an immediate first retry (urllib3's backoff_factor). The
    tail of waits that stops growing and stays level is a cap.
    """
    usable = [list(g) for g in per_sample if g]
    if not usable:
        return BackoffFit(
            Backoff("none"), Evidence(len(per_sample), "medium", note="no retries"), []
        )
    width = max(len(g) for g in usable)
    columns = [[g[k] for g in usable if len(g) > k] for k in range(width)]
    jitter = _jittered(columns)
    # the shape from the typical (median) wait; the values from the least wait (a busy
    # machine only ever lengthens one), or from the floor of the draws when jittered
    shape_all = [statistics.median(c) for c in columns]
    level_all = [_floor(c) if jitter else min(c) for c in columns]
    waits = level_all
    samples = len(usable)
    notes: list[str] = []
    if all(w < IMMEDIATE_S for w in shape_all):
        return BackoffFit(
            Backoff("none", base_s=0.0, jitter=jitter),
            Evidence(samples, confidence_of(samples), note="retries at once"),
            waits,
        )
    first_immediate = shape_all[0] < IMMEDIATE_S and len(shape_all) >= 2
    skip = int(first_immediate)
    shape, level, cols = shape_all[skip:], level_all[skip:], columns[skip:]
    if first_immediate:
        notes.append("first retry at once")
    if len(shape) == 1:
        notes.append("one wait: constant, linear and exponential look alike")
        return BackoffFit(
            Backoff("constant", _r(level[0]), None, None, jitter, first_immediate=first_immediate),
            Evidence(samples, "low", note="; ".join(notes)),
            waits,
        )
    if not any(_grows(a, b, jitter) for a, b in zip(cols, cols[1:], strict=False)) and (
        jitter or _flat(shape)
    ):
        return BackoffFit(
            Backoff(
                "constant",
                _r(statistics.median(level)),
                None,
                None,
                jitter,
                first_immediate=first_immediate,
            ),
            Evidence(samples, confidence_of(samples), note="; ".join(notes) or "level waits"),
            waits,
        )
    # the growing prefix, then (perhaps) a level tail: the cap
    grow = 1
    while grow < len(shape) and _grows(cols[grow - 1], cols[grow], jitter):
        grow += 1
    tail = shape[grow:]
    cap: float | None = None
    fit_end = len(shape)
    if tail and _flat([shape[grow - 1], *tail]):
        cap = statistics.median([shape[grow - 1], *tail])
        fit_end = grow - 1 if grow >= 3 else grow
        notes.append(f"level from wait {grow + skip} on: capped")
    elif tail:
        notes.append("waits not monotonic: fitted on all")
    fit_end = max(fit_end, 2)
    base, mult, exp_err = _exp_fit(shape[:fit_end])
    first, inc, lin_err = _lin_fit(shape[:fit_end])
    lbase, lmult, lexp_err = _exp_fit(level[:fit_end])
    if lmult > 1 + FLAT_REL / 2:  # the least waits grow too: take their values
        base, mult, exp_err = lbase, lmult, lexp_err
        first, inc, lin_err = _lin_fit(level[:fit_end])
    if fit_end >= 3 and lin_err < exp_err / 2:  # linear backoff is rare: clearly better only
        backoff = Backoff(
            "linear",
            _r(first),
            None,
            _r(cap),
            jitter,
            increment_s=_r(inc),
            first_immediate=first_immediate,
        )
        err = lin_err
    else:
        if fit_end == 2:
            notes.append("two growing waits: linear and exponential look alike")
        backoff = Backoff(
            "exponential", _r(base), _r(mult, 2), _r(cap), jitter, first_immediate=first_immediate
        )
        err = exp_err
    consistent = err < 0.15 and fit_end >= 3
    conf: Confidence = confidence_of(samples, consistent)
    if fit_end == 2 and conf == "high":
        conf = "medium"
    if jitter is None and conf == "high":
        conf = "medium"
    waits_note = ", ".join(f"{w * 1000:.0f}ms" for w in waits)
    notes.insert(0, f"waits {waits_note}")
    return BackoffFit(backoff, Evidence(samples, conf, note="; ".join(notes)), waits)


# ---------------------------------------------------------------------- retry-after


def infer_retry_after(
    wait: float | None, asked: float, ignored: float | tuple[float, float] | None
) -> tuple[bool | None, float | None, str]:
    """One retry after a 503/429 with ``Retry-After: asked``: honoured, capped at what, or ignored.

    ``wait``: the client's wait before the retry (None: it did not retry); ``ignored``:
    its first backoff wait without Retry-After, or the range of them across samples (a
    jittered client's): what ignoring looks like. Returns (honoured, cap_s, note).
    """
    if wait is None:
        return None, None, f"no retry after a Retry-After of {asked:g}s"
    if wait >= asked * 0.9 - 0.05:
        return True, None, f"waited {wait:.2f}s for Retry-After {asked:g}s"
    low, high = ignored if isinstance(ignored, tuple) else (ignored or 0.0, ignored or 0.0)
    if low - max(0.05, 0.3 * low) <= wait <= high + max(0.05, 0.3 * high):
        return False, None, f"waited {wait:.2f}s (its backoff) for Retry-After {asked:g}s"
    return True, _r(wait, 2), f"waited {wait:.2f}s for Retry-After {asked:g}s: capped"


# ---------------------------------------------------------------------- timeout


def infer_timeout(attempts: Sequence[Attempt], cap_s: float) -> tuple[float | None, Evidence]:
    """The client's timeout: how long it waited on a hung upstream before giving up."""
    gave_up = [a.duration_s for a in attempts if a.outcome == "client_disconnected"]
    if not gave_up:
        waited = max((a.duration_s for a in attempts), default=0.0)
        note = f"still waiting after {waited:.1f}s (probe cap {cap_s:g}s)"
        return None, Evidence(len(attempts), "medium" if attempts else "low", note=note)
    value = min(gave_up)  # a client may hold a timed-out connection through its backoff
    consistent = _flat(gave_up)
    note = ", ".join(f"{d:.2f}s" for d in gave_up)
    return _r(value, 2), Evidence(len(gave_up), confidence_of(len(gave_up), consistent), note=note)


# ---------------------------------------------------------------------- breaker


@dataclass(frozen=True)
class BreakerFit:
    breaker: Breaker | None
    evidence: Evidence
    findings: dict[str, Any]


def infer_breaker(samples: Sequence[Sample], healed_at_s: float | None) -> BreakerFit:
    """A circuit breaker from a run of triggers while the upstream failed, then recovered.

    The samples are consecutive triggers (``started_s`` on one clock). The breaker opened
    when a trigger reached no upstream while it was still failing: ``opens_after`` is the
    number of failed attempts before it. A later trigger that reaches the upstream again is
    the half-open probe: ``reset_s`` is from the failure that opened it to that probe (and
    again from the probe that re-opened it to the first call after the upstream healed, at
    ``healed_at_s``); ``half_open_probes`` counts attempts let through before it re-opened.
    """

    def absolute(s: Sample) -> list[tuple[float, float]]:
        return [(s.started_s + a.t_s, s.started_s + a.t_s + a.duration_s) for a in s.attempts]

    failed = 0
    opened_at: float | None = None
    i = 0
    for i, s in enumerate(samples):  # noqa: B007 - i is used after the loop
        if not s.attempts:
            if failed:
                break
            continue
        failed += len(s.attempts)
        opened_at = absolute(s)[-1][1]
    else:
        return BreakerFit(
            None,
            Evidence(
                len(samples), confidence_of(len(samples)), note=f"{failed} failures, never open"
            ),
            {"failures": failed, "opened": False},
        )
    findings: dict[str, Any] = {"opens_after": failed, "opened": True}
    resets: list[float] = []
    probes: int | None = None
    rest = list(samples[i + 1 :])
    # the first half-open window: while the upstream still fails
    probe_times: list[tuple[float, float]] = []
    j = 0
    while j < len(rest):
        s = rest[j]
        if healed_at_s is not None and s.started_s >= healed_at_s:
            break
        if s.attempts:
            probe_times.extend(absolute(s))
        elif probe_times:
            break
        j += 1
    if probe_times and opened_at is not None:
        resets.append(probe_times[0][0] - opened_at)
        probes = len(probe_times)
        reopened_at = probe_times[-1][1]
        after = [s for s in rest[j:] if s.attempts and healed_at_s is not None]
        if after:
            first_back = absolute(after[0])[0][0]
            resets.append(first_back - reopened_at)
    findings.update(
        {
            "resets_s": [_r(r, 2) for r in resets],
            "half_open_probes": probes,
            "short_circuited": sum(1 for s in samples if not s.attempts),
        }
    )
    reset = _r(statistics.fmean(resets), 2) if resets else None
    note = f"opened after {failed} failures"
    if resets:
        note += "; reset " + ", ".join(f"{r:.2f}s" for r in resets)
    conf: Confidence = "high" if len(resets) >= 2 else "medium"
    return BreakerFit(
        Breaker(opens_after=failed, reset_s=reset, half_open_probes=probes),
        Evidence(1, conf, note=note),
        findings,
    )


# ---------------------------------------------------------------------- per experiment


def retried(sample: Sample) -> bool:
    return len(primary(sample)) > 1


def experiment_findings(result: ExperimentResult) -> dict[str, Any]:
    """What one (sampled) experiment showed: attempts and the waits between them."""
    counts = [len(primary(s)) for s in result.samples]
    waits = [[_r(g) for g in gaps(primary(s))] for s in result.samples]
    return {
        "attempts": counts[0] if len(set(counts)) == 1 and counts else counts,
        "gaps_s": waits[0] if len(waits) == 1 else waits,
    }


def _fell_back(body: str, baseline: str | None, fallback: str | None) -> bool:
    """A 2xx answer to a malformed upstream body is a fallback when it equals the healthy
    answer (a cache: a broken body cannot parse into it) or resembles the app's answer
    while the upstream fails more than the healthy one; else the broken body went on."""
    if not body:
        return False  # nothing to compare (a command's empty output): it took the body
    if baseline is not None and body == baseline:
        return True
    if fallback is None:
        return False
    return _likeness(body, fallback) > _likeness(body, baseline or "")


_JSON_KEY = re.compile(r'"([^"\\]{1,40})"\s*:')


def _likeness(a: str, b: str) -> float:
    """How alike two answers are in form, not in values: the JSON keys they share
    (Jaccard), else their text with every number made 0."""
    keys_a, keys_b = set(_JSON_KEY.findall(a)), set(_JSON_KEY.findall(b))
    if keys_a and keys_b:
        return len(keys_a & keys_b) / len(keys_a | keys_b)
    digits = re.compile(r"[0-9]+")
    return difflib.SequenceMatcher(None, digits.sub("0", a), digits.sub("0", b)).ratio()


def infer_policy(
    experiments: Mapping[str, ExperimentResult],
    *,
    retry_after_s: float | None = None,
    retry_after_long_s: float | None = None,
    hang_cap_s: float = 10.0,
    baseline_body: str | None = None,
    fallback_body: str | None = None,
    healed_at_s: float | None = None,
) -> tuple[Policy, dict[str, Evidence]]:
    """The policy and its evidence from the experiments that ran (missing ones stay None)."""
    policy = Policy()
    evidence: dict[str, Evidence] = {}

    def ev(item: str, e: Evidence, *names: str) -> None:
        e.experiments = [n for n in names if n in experiments]
        evidence[item] = e

    give_up = experiments.get("fail_until_give_up")
    first_wait: tuple[float, float] | None = None
    if give_up is not None and give_up.samples:
        policy.attempts, e = infer_attempts([len(primary(s)) for s in give_up.samples])
        ev("attempts", e, "fail_until_give_up")
        fit = infer_backoff([gaps(primary(s)) for s in give_up.samples])
        policy.backoff = fit.backoff
        ev("backoff", fit.evidence, "fail_until_give_up")
        firsts = [g[0] for g in (gaps(primary(s)) for s in give_up.samples) if g]
        first_wait = (min(firsts), max(firsts)) if firsts else None

    ra = experiments.get("retry_after")
    if ra is not None and ra.samples and retry_after_s is not None:
        honoured_votes: list[bool | None] = []
        cap: float | None = None
        notes = []
        for name, asked in (("retry_after", retry_after_s), ("rate_limited", retry_after_s)):
            exp = experiments.get(name)
            if exp is None or not exp.samples:
                continue
            w = gaps(primary(exp.samples[0]))
            honoured, c, note = infer_retry_after(w[0] if w else None, asked, first_wait)
            honoured_votes.append(honoured)
            notes.append(f"{name}: {note}")
            cap = cap if c is None else c
        long = experiments.get("retry_after_long")
        if long is not None and long.samples and retry_after_long_s is not None:
            w = gaps(primary(long.samples[0]))
            honoured, c, note = infer_retry_after(
                w[0] if w else None, retry_after_long_s, first_wait
            )
            notes.append(f"long: {note}")
            if honoured is False and honoured_votes and honoured_votes[0]:
                c = _r(w[0], 2)  # honoured a short one, not a long one: capped
            if c is not None:
                cap = c
        first = next((v for v in honoured_votes if v is not None), None)
        policy.retry_after = RetryAfter(honoured=first, cap_s=cap)
        ev(
            "retry_after",
            Evidence(len(notes), "high" if len(notes) >= 2 else "medium", note="; ".join(notes)),
            "retry_after",
            "rate_limited",
            "retry_after_long",
        )

    for item, names in (
        ("retries_4xx", ("client_error", "bad_request")),
        ("retries_on_reset", ("reset",)),
        ("retries_non_idempotent", ("non_idempotent",)),
    ):
        ran = [experiments[n] for n in names if n in experiments and experiments[n].samples]
        if not ran:
            continue
        votes = [retried(s) for e in ran for s in e.samples]
        setattr(policy, item, any(votes))
        note = ", ".join(f"{e.name}: {len(primary(e.samples[0]))} attempts" for e in ran)
        ev(item, Evidence(len(votes), confidence_of(len(votes)), note=note), *names)

    close = experiments.get("close")
    if close is not None and close.samples and "retries_on_reset" in evidence:
        evidence["retries_on_reset"].note += f"; close: {len(primary(close.samples[0]))} attempts"
        evidence["retries_on_reset"].experiments.append("close")

    post = experiments.get("non_idempotent")
    if post is not None and post.samples:
        keys = [a.idempotency_key for s in post.samples for a in s.attempts]
        # one key per logical call, the same on its retries
        same = all(len({a.idempotency_key for a in s.attempts}) <= 1 for s in post.samples)
        policy.idempotency_key = bool(keys) and all(k is not None for k in keys) and same
        ev(
            "idempotency_key",
            Evidence(len(keys), confidence_of(len(post.samples)), note=f"{len(keys)} attempts"),
            "non_idempotent",
        )

    hang = experiments.get("hang")
    if hang is not None and hang.samples:
        attempts = [a for s in hang.samples for a in primary(s)]
        policy.timeout_s, e = infer_timeout(attempts, hang_cap_s)
        ev("timeout_s", e, "hang")

    failing = [experiments[n] for n in ("fail_until_give_up", "hang") if n in experiments]
    answers = [s.outcome for e in failing for s in e.samples]
    if answers:
        ok = [is_success(o.status, o.exit_code) for o in answers]
        policy.fallback = any(ok)
        ev(
            "fallback",
            Evidence(
                len(ok),
                confidence_of(len(ok), len(set(ok)) == 1),
                note=f"{sum(ok)}/{len(ok)} 2xx or exit 0",
            ),
            "fail_until_give_up",
            "hang",
        )
        policy.app_latency_budget_s = _r(max(o.duration_s for o in answers), 2)
        ev(
            "app_latency_budget_s",
            Evidence(
                len(answers), confidence_of(len(answers)), note="slowest answer while failing"
            ),
            "fail_until_give_up",
            "hang",
        )

    bad = experiments.get("malformed")
    if bad is not None and bad.samples:
        s = bad.samples[0]
        o = s.outcome
        if retried(s):
            verdict, note = True, "retried"
        elif not is_success(o.status, o.exit_code):
            verdict, note = True, f"answered {o.status if o.status is not None else o.exit_code}"
        elif _fell_back(o.body_excerpt, baseline_body, fallback_body):
            verdict, note = True, "answered 2xx as it does while the upstream fails (fallback)"
        else:
            verdict, note = False, "passed it on (2xx, no retry)"
        policy.malformed_is_failure = verdict
        ev("malformed_is_failure", Evidence(1, "medium", note=note), "malformed")

    breaker = experiments.get("breaker")
    if breaker is not None:
        bfit = infer_breaker(breaker.samples, healed_at_s)
        policy.breaker = bfit.breaker
        ev("breaker", bfit.evidence, "breaker")
    return policy, evidence
