"""The battery of ``chaosproxy assess``: each experiment is one scenario and a number of samples.

Scenarios are plain dicts (as a scenario file would hold them), so the JSON document
shows exactly what was applied. ``per_request: {times: 1}`` fails only the first
attempt of each call ("one failure, then success"); a rule with no selection fails
every attempt ("until the client gives up").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

#: Default probe cap for a hang: a client still waiting after this has no timeout to speak of.
HANG_CAP_S = 10.0


@dataclass(frozen=True)
class Experiment:
    """One experiment: ``scenario`` applied for each of ``samples`` triggered calls."""

    name: str
    title: str
    scenario: dict[str, Any]
    samples: int = 1
    kind: Literal["sample", "breaker"] = "sample"
    params: dict[str, Any] = field(default_factory=dict)


def _scenario(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"assess-{name}", "rules": list(rules)}


def _once(fault: dict[str, Any]) -> dict[str, Any]:
    return {"name": "first-attempt", "per_request": {"times": 1}, "fault": fault}


def _always(fault: dict[str, Any]) -> dict[str, Any]:
    return {"name": "every-attempt", "fault": fault}


def baseline() -> Experiment:
    return Experiment("baseline", "Healthy upstream", _scenario("baseline"), samples=1)


def opening(quick: bool) -> list[Experiment]:
    """The experiments whose results size the rest (the backoff sets the Retry-After)."""
    return [
        baseline(),
        Experiment(
            "one_failure",
            "One 503, then success",
            _scenario("one-failure", _once({"type": "error", "status": 503})),
        ),
        Experiment(
            "fail_until_give_up",
            "503 until the client gives up",
            _scenario("fail-until-give-up", _always({"type": "error", "status": 503})),
            samples=3,
            # jittered waits need more samples to tell the shape from the jitter, when cheap
            params={"more_if_jittered": 9, "more_below_s": 2.5 if quick else 4.0},
        ),
    ]


def retry_after_for(first_wait_s: float | None) -> int:
    """A Retry-After (whole seconds) well above the client's own first wait."""
    return max(1, math.ceil(2.5 * (first_wait_s or 0.0)))


def rest(
    quick: bool,
    method: str,
    retry_after_s: int,
    hang_cap_s: float = HANG_CAP_S,
) -> list[Experiment]:
    """The rest of the battery, in the order it runs."""

    def ra(status: int, seconds: int) -> dict[str, Any]:
        return {"type": "error", "status": status, "headers": {"Retry-After": str(seconds)}}

    long_s = max(4, 3 * retry_after_s)
    battery = [
        Experiment(
            "retry_after",
            f"503 with Retry-After: {retry_after_s}",
            _scenario("retry-after", _once(ra(503, retry_after_s))),
            params={"retry_after_s": retry_after_s},
        ),
        Experiment(
            "rate_limited",
            f"429 with Retry-After: {retry_after_s}",
            _scenario("rate-limited", _once(ra(429, retry_after_s))),
            params={"retry_after_s": retry_after_s},
        ),
    ]
    if not quick:
        battery.append(
            Experiment(
                "retry_after_long",
                f"503 with Retry-After: {long_s} (is it capped?)",
                _scenario("retry-after-long", _once(ra(503, long_s))),
                params={"retry_after_s": long_s},
            )
        )
    battery.append(
        Experiment(
            "client_error",
            "404, then success (is a client error retried?)",
            _scenario("client-error", _once({"type": "error", "status": 404})),
        )
    )
    if not quick:
        battery.append(
            Experiment(
                "bad_request",
                "400, then success (is a client error retried?)",
                _scenario("bad-request", _once({"type": "error", "status": 400})),
            )
        )
    battery.append(
        Experiment(
            "reset",
            "Connection reset, then success",
            _scenario("reset", _once({"type": "abort", "how": "reset"})),
        )
    )
    if not quick:
        battery.append(
            Experiment(
                "close",
                "Connection closed with no answer, then success",
                _scenario("close", _once({"type": "abort", "how": "close"})),
            )
        )
    cap = f"{hang_cap_s:g}s"
    battery += [
        Experiment(
            "hang",
            "The upstream hangs (when does the client give up?)",
            _scenario("hang", _always({"type": "timeout", "after": cap, "then": 504})),
            params={"cap_s": hang_cap_s},
        ),
        Experiment(
            "malformed",
            "A malformed body (broken JSON)",
            _scenario("malformed", _always({"type": "malformed", "mode": "invalid_json"})),
        ),
    ]
    if method.upper() not in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"):
        battery.append(
            Experiment(
                "non_idempotent",
                f"One 503 on a {method.upper()} (retried? with an Idempotency-Key?)",
                _scenario("non-idempotent", _once({"type": "error", "status": 503})),
            )
        )
    if not quick:
        battery.append(
            Experiment(
                "breaker",
                "An outage long enough to open a breaker, then recovery",
                _scenario("outage", _always({"type": "error", "status": 503})),
                kind="breaker",
            )
        )
    return battery
