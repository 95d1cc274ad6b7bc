"""``--expect policy.yaml``: bounds, located errors, and each miss explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosproxy.testing.assess import expect
from chaosproxy.testing.assess.model import (
    Assessment,
    Backoff,
    Breaker,
    Evidence,
    ExperimentResult,
    Policy,
    RetryAfter,
    Target,
)


def assessment(**policy: object) -> Assessment:
    base = {
        "timeout_s": 2.0,
        "attempts": 3,
        "backoff": Backoff("exponential", 0.1, 2.0, None, True),
        "retry_after": RetryAfter(True, None),
        "retries_4xx": False,
        "retries_on_reset": True,
        "breaker": Breaker(5, 10.0, 1),
        "fallback": True,
    }
    base.update(policy)
    return Assessment(
        "2026-12-06T07:00:00Z",
        30.0,
        1,
        False,
        Target("url", "http://u", url="http://a/x"),
        Policy(**base),  # type: ignore[arg-type]
        {"attempts": Evidence(3, "high", ["fail_until_give_up"], "3,3,3")},
        [ExperimentResult("breaker", "outage", {})],
    )


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        (3, [3], [2, 4]),
        ("2..4", [2, 3, 4], [1, 5]),
        ("<= 3", [0, 3], [3.01]),
        ("< 3", [2.99], [3]),
        (">= 1", [1, 9], [0.99]),
        ("> 1", [1.01], [1]),
        ("== 2", [2], [2.1]),
        ("0.5", [0.5], [0.6]),
    ],
)
def test_bounds(text: object, inside: list[float], outside: list[float]) -> None:
    bound = expect.parse_bound(text)
    assert all(bound.holds(v) for v in inside)
    assert not any(bound.holds(v) for v in outside)


@pytest.mark.parametrize(
    ("value", "message"),
    [("4..2", "empty"), ("three", "not a number or a range"), (True, "not a number")],
)
def test_bad_bounds(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expect.parse_bound(value)


GOOD = """\
attempts: 2..4
timeout_s: "<= 3"
retry_after: honoured
breaker: required
retries_4xx: false
backoff: {kind: exponential, jitter: true, multiplier: "1.5..2.5"}
"""


def test_a_client_that_meets_the_policy_has_no_misses() -> None:
    policy = expect.parse(GOOD, "policy.yaml")
    assert len(policy.rules) == 8
    assert expect.check(policy, assessment()) == []


def test_each_miss_is_explained() -> None:
    policy = expect.parse(GOOD, "policy.yaml")
    weak = assessment(
        attempts=1,
        timeout_s=None,
        retry_after=RetryAfter(False, None),
        retries_4xx=True,
        breaker=None,
        backoff=Backoff("constant", 0.2, None, None, False),
    )
    misses = expect.check(policy, weak)
    assert misses[0] == ("attempts: expected 2..4, got 1; 3 sample(s), high confidence (3,3,3)")
    text = "\n".join(misses)
    assert "timeout_s: expected <= 3, but none was seen" in text
    assert "retry_after: expected honoured, got ignored" in text
    assert "breaker: expected a breaker, got no breaker" in text
    assert "retries_4xx: expected false, got true" in text
    assert "backoff.kind: expected exponential, got constant" in text
    assert "backoff.jitter: expected true, got false" in text
    assert len(misses) == 8  # multiplier None: none was seen


def test_capped_retry_after_counts_as_honoured_and_as_capped() -> None:
    capped = assessment(retry_after=RetryAfter(True, 2.0))
    assert expect.check(expect.parse("retry_after: honoured"), capped) == []
    assert expect.check(expect.parse("retry_after: capped"), capped) == []
    miss = expect.check(expect.parse("retry_after: ignored"), capped)
    assert miss == ["retry_after: expected ignored, got capped at 2s"]


def test_a_quick_assessment_cannot_meet_breaker_required() -> None:
    quick = assessment(breaker=None)
    quick.experiments = []
    assert expect.check(expect.parse("breaker: required"), quick) == [
        "breaker: not probed (--quick skips the breaker)"
    ]


def test_breaker_settings() -> None:
    policy = expect.parse("breaker: {opens_after: 3..5, reset_s: '>= 20'}")
    misses = expect.check(policy, assessment())
    assert misses == ["breaker.reset_s: expected >= 20, got 10"]


@pytest.mark.parametrize(
    ("text", "located"),
    [
        (
            "attempts: 2..4\natempts: 3\n",
            "p.yaml:2:1: atempts: unknown key 'atempts' (did you mean 'attempts'?)",
        ),
        ("attempts: lots\n", "p.yaml:1:11: attempts: 'lots' is not a number or a range"),
        ("retries_4xx: maybe\n", "p.yaml:1:14: retries_4xx: 'maybe' is not true or false"),
        (
            "retry_after: sometimes\n",
            "p.yaml:1:14: retry_after: 'sometimes': write one of honoured, ignored, capped",
        ),
        ("breaker: yes\n", "p.yaml:1:10: breaker: 'yes': write required, forbidden, or a mapping"),
        (
            "backoff: {kind: fibonacci}\n",
            "p.yaml:1:17: backoff.kind: 'fibonacci': write one of none, constant",
        ),
        (
            "backoff: {knd: linear}\n",
            "p.yaml:1:11: backoff.knd: unknown key 'knd' (did you mean 'kind'?)",
        ),
        (
            'connect_timeout_s: "<= 2"\n',
            "p.yaml:1:20: connect_timeout_s: not probed (the proxy accepts every connection",
        ),
        ("- attempts\n", "p.yaml:1:1: (top): a policy file is a mapping"),
        ("attempts: [1\n", "p.yaml:"),
    ],
)
def test_bad_policies_are_located(text: str, located: str) -> None:
    with pytest.raises(expect.PolicyError) as info:
        expect.parse(text, "p.yaml")
    assert info.value.lines[0].startswith(located), info.value.lines


def test_every_problem_is_reported() -> None:
    with pytest.raises(expect.PolicyError) as info:
        expect.parse("attempts: x\nfallback: 2\n", "p.yaml")
    assert len(info.value.lines) == 2


def test_load_a_file_and_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    assert expect.load(path).source == str(path)
    with pytest.raises(expect.PolicyError, match="nope.yaml"):
        expect.load(tmp_path / "nope.yaml")


def test_verdicts_name_their_item_and_say_what_was_seen() -> None:
    policy = expect.parse("attempts: 2..4\nbackoff: {jitter: true}\n")
    weak = assessment(backoff=Backoff("exponential", 0.1, 2.0, None, False))
    got = expect.verdicts(policy, weak)
    assert [(v.item, v.ok) for v in got] == [("attempts", True), ("backoff.jitter", False)]
    assert got[1].message.startswith("expected true, got false")
