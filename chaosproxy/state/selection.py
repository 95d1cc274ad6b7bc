"""One decision against shared counters: what the store is sent, and what its reply means.

Matching stays in the replica (pure, no store); only the rules that matched a request go
to the store, each as a row of its selection steps (skip, every, times, per_request,
probability, rate_limit). The store runs DESIGN.md's selection over its counters in one
atomic step (:data:`SELECT_SCRIPT`, a Lua script) and answers which rule fired, with the
counts it now holds.

The decision draw depends on the rule's match number, which only the store knows: the
replica sends, per probabilistic rule, the draws of the next :data:`DRAW_WINDOW` match
numbers after the last one it saw (as ``0``/``1`` for below/above the probability), and
the store asks again with the number it reached when that falls outside (rare: other
replicas made that many matches since). So the draws are the same as one process's,
bit for bit (:func:`chaosproxy.core.engine.draw`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chaosproxy.core.engine import (
    Decision,
    RequestView,
    RuleState,
    _sticky_value,
    draw,
    draw_for_key,
    request_identity,
)
from chaosproxy.faults.rate_limit import RateLimit

#: Draws sent per probabilistic rule: the next match numbers the store may reach.
DRAW_WINDOW = 32
#: Fields per rule row in the script's arguments.
ROW = 12

SELECT_SCRIPT = """
-- KEYS[1]: the phase's counters (hash); KEYS[1+i]: rule i's per_request attempts (hash)
-- ARGV[1]: rows; then ROW fields per rule (see chaosproxy/state/selection.py)
local rows = tonumber(ARGV[1])
local c = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local writes = {}
local out = {}
local winner, attempt, retry = 0, -1, -1
for i = 1, rows do
  local b = 1 + (i - 1) * 12
  local idx = ARGV[b + 1]
  local skip, every, times = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local prt, ident = tonumber(ARGV[b + 5]), ARGV[b + 6]
  local pmode, pbase, pbits = tonumber(ARGV[b + 7]), tonumber(ARGV[b + 8]), ARGV[b + 9]
  local glimit, gper, gkey = tonumber(ARGV[b + 10]), tonumber(ARGV[b + 11]), ARGV[b + 12]
  local seen = tonumber(redis.call('HGET', c, idx .. ':s') or '0') + 1
  local injected = tonumber(redis.call('HGET', c, idx .. ':i') or '0')
  writes[#writes + 1] = {c, idx .. ':s', seen}
  local pass = true
  if skip > 0 and seen <= skip then pass = false end
  if pass and every > 0 and (seen - skip) % every ~= 0 then pass = false end
  if pass and times >= 0 and injected >= times then pass = false end
  if pass and prt > 0 then
    attempt = tonumber(redis.call('HGET', KEYS[1 + i], ident) or '0') + 1
    writes[#writes + 1] = {KEYS[1 + i], ident, attempt}
    if attempt > prt then pass = false end
  end
  if pass and pmode == 1 then
    local off = seen - pbase
    if off < 0 or off >= string.len(pbits) then return {'draw', i, seen} end
    if string.sub(pbits, off + 1, off + 1) ~= '1' then pass = false end
  elseif pass and pmode == 2 and pbits ~= '1' then
    pass = false
  end
  if pass and glimit > 0 then
    local wf = idx .. ':w:' .. gkey
    local w = redis.call('HMGET', c, wf .. ':t', wf .. ':n')
    local start, count = tonumber(w[1]), tonumber(w[2] or '0')
    if start == nil or now - start >= gper then
      start, count = now, 0
      writes[#writes + 1] = {c, wf .. ':t', string.format('%.3f', now)}
    end
    if count < glimit then
      writes[#writes + 1] = {c, wf .. ':n', count + 1}
      pass = false
    else
      retry = math.max(1, math.ceil((start + gper - now) / 1000))
    end
  end
  if pass then
    injected = injected + 1
    writes[#writes + 1] = {c, idx .. ':i', injected}
    winner = i
  end
  out[#out + 1] = seen
  out[#out + 1] = injected
  if pass then break end
  attempt, retry = -1, -1
end
for _, w in ipairs(writes) do
  redis.call('HSET', w[1], w[2], w[3])
  redis.call('PEXPIRE', w[1], 86400000)
end
local reply = {'ok', winner, attempt, retry}
for _, v in ipairs(out) do reply[#reply + 1] = v end
return reply
"""


@dataclass
class Candidate:
    """A rule that matched the request: its place in the phase, and what it needs."""

    index: int
    state: RuleState
    identity: str | None = None
    sticky: str | None = None
    draw_base: int = 0
    """The first match number the draws sent for this rule are for."""


@dataclass(frozen=True)
class Outcome:
    """The store's answer: which candidates it tried (their phase counts), which fired."""

    tried: list[tuple[Candidate, int, int]]
    """Each candidate tried, in order, with the phase's seen and injected counts."""
    fired: bool
    attempt: int | None
    retry_after: int | None


@dataclass(frozen=True)
class NeedDraws:
    """The store reached a match number outside the draws sent for a candidate."""

    position: int
    seen: int


def candidates(matched: Sequence[tuple[int, RuleState]], req: RequestView) -> list[Candidate]:
    """The request's candidates, with the identity and sticky key their steps read."""
    out = []
    for index, state in matched:
        rule = state.rule
        cand = Candidate(index, state, draw_base=state.seen + 1)
        if rule.per_request is not None:
            cand.identity = request_identity(req)
        cand.sticky = _sticky_value(rule, req)
        out.append(cand)
    return out


def _window_draws(cand: Candidate, seed: int) -> str:
    state = cand.state
    p = state.rule.probability
    base = cand.draw_base
    return "".join(
        "1" if draw(seed, state.phase, state.name, n) < p else "0"
        for n in range(base, base + DRAW_WINDOW)
    )


def arguments(cands: Sequence[Candidate], seed: int, req: RequestView) -> list[str | int | float]:
    """The script's ARGV for ``cands`` (see :data:`SELECT_SCRIPT`)."""
    args: list[str | int | float] = [len(cands)]
    for cand in cands:
        state, rule = cand.state, cand.state.rule
        pmode, bits = 0, ""
        if rule.probability < 1:
            if cand.sticky is not None:
                pmode = 2
                value = draw_for_key(seed, state.phase, state.name, f"sticky\x1f{cand.sticky}")
                bits = "1" if value < rule.probability else "0"
            elif cand.identity is not None:
                pmode = 2
                value = draw_for_key(seed, state.phase, state.name, f"request\x1f{cand.identity}")
                bits = "1" if value < rule.probability else "0"
            else:
                pmode, bits = 1, _window_draws(cand, seed)
        limit, per_ms, key = 0, 0.0, ""
        gate = state.gate
        if isinstance(gate, RateLimit):
            limit, per_ms = gate.limit, round(gate.per * 1000, 3)
            name = gate.header
            if name:
                values = req.header(name)
                key = values[0] if values else ""
        elif gate is not None:  # pragma: no cover - rate_limit is the only gating fault
            raise TypeError(f"shared state cannot count {type(gate).__name__}")
        args += [
            cand.index,
            rule.skip or 0,
            rule.every or 0,
            rule.times if rule.times is not None else -1,
            rule.per_request.times if rule.per_request is not None else 0,
            cand.identity or "",
            pmode,
            cand.draw_base,
            bits,
            limit,
            per_ms,
            key,
        ]
    return args


def read_reply(cands: Sequence[Candidate], reply: Sequence[object]) -> Outcome | NeedDraws:
    """What the script's ``reply`` says about ``cands``."""
    kind = _text(reply[0])
    if kind == "draw":
        return NeedDraws(int(reply[1]) - 1, int(reply[2]))  # type: ignore[call-overload]
    winner, attempt, retry = (int(v) for v in reply[1:4])  # type: ignore[call-overload]
    counts = [int(v) for v in reply[4:]]  # type: ignore[call-overload]
    tried = [(cands[i], counts[2 * i], counts[2 * i + 1]) for i in range(len(counts) // 2)]
    return Outcome(
        tried,
        fired=winner > 0,
        attempt=attempt if attempt >= 0 else None,
        retry_after=retry if retry >= 0 else None,
    )


def decision_of(outcome: Outcome, seed: int) -> Decision | None:
    """The Decision of an outcome that fired (None: untouched)."""
    if not outcome.fired:
        return None
    cand, seen, _ = outcome.tried[-1]
    state = cand.state
    return Decision(
        state.rule,
        state.phase,
        seen,
        seed,
        outcome.retry_after,
        cand.identity,
        outcome.attempt,
        cand.sticky,
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
