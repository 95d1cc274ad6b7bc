"""The demo app assessed through the Python API and its URL: the inferred policy is its
configuration. The full battery (the breaker, the Retry-After cap) runs on the same demo
client in tests/resilience/test_policy.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chaosproxy.demo_app import create_app
from chaosproxy.demo_app.upstream import create_upstream
from chaosproxy.testing.api import ChaosProxy
from chaosproxy.testing.assess.model import Assessment, Progress, json_schema
from chaosproxy.testing.assess.runner import UrlTrigger, assess
from tests.support import serving, validate_json


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serving(create_upstream()) as url:
        yield url


def run_demo(upstream: str, quick: bool, **config: Any) -> tuple[Assessment, list[Progress]]:
    seen: list[Progress] = []
    with ChaosProxy(upstream=upstream) as proxy:
        app = create_app({"UPSTREAM_URL": proxy.url, "TESTING": True, **config})
        with serving(app) as url:
            result = assess(
                proxy, UrlTrigger(f"{url}/weather/berlin"), quick=quick, on_progress=seen.append
            )
    print(json.dumps(result.to_json()["policy"], indent=1))
    print({k: e.note for k, e in result.evidence.items()})
    print([(e.name, e.findings.get("gaps_s")) for e in result.experiments])
    return result, seen


def test_quick_assessment_of_the_demo(upstream: str) -> None:
    a, progress = run_demo(upstream, quick=True)
    p = a.policy
    assert p.attempts == 3  # RETRY_ATTEMPTS
    assert p.timeout_s == pytest.approx(2.0, rel=0.1)  # READ_TIMEOUT
    assert p.retry_after is not None and p.retry_after.honoured is True
    assert p.retries_4xx is False
    assert p.retries_on_reset is True
    assert p.fallback is True  # the last good answer
    assert p.malformed_is_failure is True  # refused, answered from the cache
    assert p.breaker is None and a.evidence["breaker"].note == "not probed (--quick)"
    assert p.backoff is not None and p.backoff.kind == "exponential"
    validate_json(a.to_json(), json_schema())
    assert Assessment.from_json(json.loads(json.dumps(a.to_json()))) == a
    names = [e.name for e in a.experiments]
    assert names[:3] == ["baseline", "one_failure", "fail_until_give_up"]
    assert "breaker" not in names
    done = [p.experiment for p in progress if p.done]
    assert done == names
    assert all(p.samples >= 1 for p in progress)
