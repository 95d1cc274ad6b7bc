"""Accuracy on clients nobody here wrote: the inferred policy against the configured one.

Each client is assessed with three seeds, every client and seed at once (AT_ONCE at a
time, one proxy each: they mostly wait on timers); every test prints inferred vs
configured. Targets (issue 18): attempts exact; backoff kind and jitter yes/no
right; base and multiplier within 20 %; timeout within 10 %; Retry-After honoured or
ignored right; breaker threshold exact and reset within 20 %.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

from chaosproxy.testing.api import ChaosProxy
from chaosproxy.testing.assess.model import Assessment
from chaosproxy.testing.assess.runner import CallableTrigger, CommandTrigger, assess
from tests.assess.clients import CLIENTS, CURL, PATH, Client
from tests.support import UpstreamServer, require_tool, running_upstream

SEEDS = (1, 2, 3)
HANG_CAP_S = 3.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with running_upstream() as server:
        yield server


def inferred(a: Assessment) -> dict[str, Any]:
    p = a.policy
    b = p.backoff
    br = p.breaker
    return {
        "attempts": p.attempts,
        "kind": b.kind if b else None,
        "first_immediate": b.first_immediate if b else None,
        "base_s": b.base_s if b else None,
        "multiplier": b.multiplier if b else None,
        "jitter": b.jitter if b else None,
        "retry_after": p.retry_after.honoured if p.retry_after else None,
        "retries_4xx": p.retries_4xx,
        "retries_on_reset": p.retries_on_reset,
        "timeout_s": p.timeout_s,
        "opens_after": br.opens_after if br else None,
        "reset_s": br.reset_s if br else None,
        "half_open_probes": br.half_open_probes if br else None,
    }


#: relative tolerances by item; every other item must be equal
TOLERANCE = {"base_s": 0.2, "multiplier": 0.2, "timeout_s": 0.1, "reset_s": 0.2}


def misses(configured: dict[str, Any], got: dict[str, Any]) -> list[str]:
    out = []
    for item, want in configured.items():
        have = got[item]
        if item in TOLERANCE and want is not None and have is not None:
            ok = abs(have - want) <= TOLERANCE[item] * want
        else:
            ok = have == want
        if not ok:
            out.append(f"{item}: configured {want}, inferred {have}")
    return out


def table(client: Client, results: dict[int, dict[str, Any]]) -> str:
    lines = [f"{client.name}: configured vs inferred (seeds {', '.join(map(str, results))})"]
    for item, want in client.configured.items():
        got = "  ".join(f"{results[s][item]!s:>8}" for s in results)
        lines.append(f"  {item:<17} {want!s:>8} | {got}")
    return "\n".join(lines)


def assess_client(client: Client, upstream: str, seed: int) -> Assessment:
    with ChaosProxy(upstream=upstream) as proxy:
        trigger: Any
        if client.command is not None:
            env = {"CHAOSPROXY_URL": proxy.url}
            argv = [*client.command[:-1], client.command[-1], proxy.url + PATH]
            trigger = CommandTrigger(argv, env, timeout=60)
        else:
            assert client.make is not None
            trigger = CallableTrigger(client.make(proxy.url), timeout=60)
        return assess(proxy, trigger, quick=not client.full, seed=seed, hang_cap_s=HANG_CAP_S)


#: assessments at once: they mostly wait on the clients' backoff and breaker timers
AT_ONCE = 9


def check(client: Client, done: dict[int, Assessment | BaseException]) -> None:
    for outcome in done.values():
        if isinstance(outcome, BaseException):
            raise outcome
    assessed = {s: a for s, a in done.items() if isinstance(a, Assessment)}
    results = {s: inferred(a) for s, a in assessed.items()}
    print()
    print(table(client, results))
    problems = {s: misses(client.configured, r) for s, r in results.items()}
    problems = {s: p for s, p in problems.items() if p}
    if problems:
        notes = {s: {k: e.note for k, e in assessed[s].evidence.items()} for s in problems}
        raise AssertionError(f"{client.name}: {problems}\nevidence: {notes}")


def assess_all(
    clients: list[Client], upstream: str
) -> dict[str, dict[int, Assessment | BaseException]]:
    """Each client with each seed, AT_ONCE at a time (an error is kept for its own test)."""

    def one(client: Client, seed: int) -> Assessment | BaseException:
        try:
            return assess_client(client, upstream, seed)
        except Exception as exc:  # reported by the client's own test
            return exc

    with concurrent.futures.ThreadPoolExecutor(AT_ONCE) as pool:
        futures = {(c.name, s): pool.submit(one, c, s) for c in clients for s in SEEDS}
        return {c.name: {s: futures[(c.name, s)].result() for s in SEEDS} for c in clients}


@pytest.fixture(scope="module")
def assessed(upstream: UpstreamServer) -> dict[str, dict[int, Assessment | BaseException]]:
    """Every client, curl too (its waits are the longest: it runs alongside the others)."""
    return assess_all([*CLIENTS, CURL], upstream.url)


@pytest.mark.parametrize("client", CLIENTS, ids=[c.name for c in CLIENTS])
def test_inferred_policy_matches_the_configuration(
    client: Client, assessed: dict[str, dict[int, Assessment | BaseException]]
) -> None:
    check(client, assessed[client.name])


@pytest.mark.slow
def test_curl_retry(assessed: dict[str, dict[int, Assessment | BaseException]]) -> None:
    require_tool("curl")
    check(CURL, assessed[CURL.name])
