from __future__ import annotations

import asyncio
import json
import random
import re
import statistics

import pytest

from chaosproxy.core.fault import FAULT_TYPES, Wire
from chaosproxy.core.scenario import ScenarioError, load_text
from chaosproxy.faults.abort import Abort
from chaosproxy.faults.error import Error
from chaosproxy.faults.latency import Latency
from chaosproxy.faults.rate_limit import RateLimit
from chaosproxy.faults.timeout import Timeout
from tests.faults.fakewire import FakeResponse, FakeWire


def run(fault, wire: FakeWire) -> list[tuple]:
    typed: Wire = wire
    asyncio.run(fault.apply(typed))
    return wire.actions


def test_registry_maps_yaml_names_to_modules() -> None:
    assert {"latency", "timeout", "error", "abort", "rate_limit"} <= set(FAULT_TYPES)
    for name, cls in FAULT_TYPES.items():
        assert cls.__module__ == f"chaosproxy.faults.{name}"


# --------------------------------------------------------------------------- latency


def test_latency_counts_from_arrival_of_request_or_response() -> None:
    assert run(Latency(delay=0.3), FakeWire(arrival=1000.0)) == [("sleep_until", 1000.3)]
    wire = FakeWire(arrival=1000.0, response=FakeResponse(arrival=2000.0))
    assert run(Latency(delay=0.3, on="response"), wire) == [("sleep_until", 2000.3)]


def test_jitter_stays_within_its_bounds_and_spreads() -> None:
    fault = Latency(delay=0.3, jitter=0.1)
    rng = random.Random(1)
    samples = [fault.sample(rng) for _ in range(2000)]
    assert min(samples) >= 0.2 and max(samples) <= 0.4
    assert max(samples) - min(samples) > 0.15


def test_delay_never_goes_negative() -> None:
    # jitter above the delay is refused at load (issue 22); a wide normal still dips below 0
    fault = Latency(distribution={"kind": "normal", "mean": 0.01, "stddev": 0.5})
    rng = random.Random(2)
    assert min(fault.sample(rng) for _ in range(500)) == 0.0


@pytest.mark.parametrize(
    ("distribution", "check"),
    [
        (
            {"kind": "normal", "mean": "100ms", "stddev": "10ms"},
            lambda s: abs(statistics.mean(s) - 0.1) < 0.002,
        ),
        (
            {"kind": "uniform", "min": "50ms", "max": "150ms"},
            lambda s: 0.05 <= min(s) and max(s) <= 0.15,
        ),
        (
            {"kind": "lognormal", "median": "100ms", "p99": "1s"},
            lambda s: (
                abs(statistics.median(s) - 0.1) < 0.01
                and abs(sorted(s)[int(len(s) * 0.99)] - 1.0) < 0.2
            ),
        ),
    ],
)
def test_distributions(distribution: dict, check) -> None:
    fault = Latency.model_validate({"type": "latency", "distribution": distribution})
    rng = random.Random(3)
    samples = [fault.sample(rng) for _ in range(20_000)]
    assert check(samples)
    assert fault.describe().startswith(f"latency {distribution['kind']}(")


def test_distribution_draws_are_clamped_to_the_absurd_limit() -> None:
    fault = Latency.model_validate(
        {"type": "latency", "distribution": {"kind": "lognormal", "median": "1m", "p99": "9m"}}
    )
    rng = random.Random(4)
    assert max(fault.sample(rng) for _ in range(5000)) <= 600.0


def test_latency_client_leaving_ends_the_flow() -> None:
    wire = FakeWire(client_leaves=True)
    run(Latency(delay=5), wire)
    assert wire.ended


# --------------------------------------------------------------------------- timeout


def test_timeout_without_after_holds_then_lets_go_when_the_proxy_stops() -> None:
    assert run(Timeout(), FakeWire()) == [("hold",), ("close",)]
    assert run(Timeout(), FakeWire(client_leaves=True)) == [("hold",)]


def test_timeout_after_then_close_reset_or_status() -> None:
    assert run(Timeout(after=0.5), FakeWire()) == [("sleep_until", 1000.5), ("close",)]
    assert run(Timeout(after=0.5, then="reset"), FakeWire())[-1] == ("reset",)
    actions = run(Timeout(after=0.5, then="504"), FakeWire(rule="t"))
    assert actions[0] == ("sleep_until", 1000.5)
    _, status, headers, body = actions[1]
    assert status == 504 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "error": "Gateway Timeout",
        "status": 504,
        "rule": "t",
        "injected_by": "chaosproxy",
    }
    assert run(Timeout(after=0.5, then=504), FakeWire(client_leaves=True)) == [
        ("sleep_until", 1000.5)
    ]


# --------------------------------------------------------------------------- error


def test_error_default_body_names_the_rule() -> None:
    [(_, status, headers, body)] = run(Error(status=503), FakeWire(rule="unavailable"))
    assert status == 503
    assert headers == {"content-type": "application/json"}
    assert json.loads(body)["rule"] == "unavailable"


def test_error_text_and_json_bodies_and_headers() -> None:
    [(_, _, headers, body)] = run(
        Error(status=500, body="oops", headers={"Retry-After": "3"}), FakeWire()
    )
    assert body == b"oops" and headers == {
        "Retry-After": "3",
        "content-type": "text/plain; charset=utf-8",
    }
    fault = Error.model_validate(
        {"type": "error", "status": 400, "json": {"code": "E1", "n": [1, 2]}}
    )
    [(_, _, headers, body)] = run(fault, FakeWire())
    assert (
        json.loads(body) == {"code": "E1", "n": [1, 2]}
        and headers["content-type"] == "application/json"
    )
    fault = Error(status=502, body="<h1>bad</h1>", headers={"Content-Type": "text/html"})
    [(_, _, headers, _)] = run(fault, FakeWire())
    assert headers == {"Content-Type": "text/html"}


def test_abort() -> None:
    assert run(Abort(), FakeWire()) == [("reset",)]
    assert run(Abort(how="close"), FakeWire()) == [("close",)]


def test_rate_limit_answers_with_retry_after() -> None:
    [(_, status, headers, body)] = run(RateLimit(limit=2, per=10), FakeWire(retry_after=7))
    assert status == 429 and headers["retry-after"] == "7"
    assert json.loads(body)["retry_after"] == 7


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        (Latency(delay=0.3, jitter=0.1), "latency 300ms±100ms"),
        (Latency(delay=2, on="response"), "latency 2s on response"),
        (Timeout(), "timeout (hold)"),
        (Timeout(after=0.5, then=504), "timeout 500ms then 504"),
        (Error(status=503), "error 503"),
        (Abort(how="close", on="response"), "abort close on response"),
        (
            RateLimit(limit=2, per=10, key="header:X-Api-Key"),
            "rate_limit 2/10s per header:X-Api-Key",
        ),
    ],
)
def test_describe(fault, text: str) -> None:
    assert fault.describe() == text


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            '{"Retry After": "3"}',
            "rules[0].fault.headers: 'Retry After' is not a header name: use letters, digits",
        ),
        ('{"X-A:": b}', "rules[0].fault.headers: 'X-A:' is not a header name"),
        ('{"": b}', "rules[0].fault.headers: '' is not a header name"),
        ('{X-A: "a\\r\\nSet-Cookie: s=1"}', "headers.X-A: a header value may not contain CR"),
        ('{X-A: "a\\nb"}', "headers.X-A: a header value may not contain LF"),
        ('{X-A: "a\\0b"}', "headers.X-A: a header value may not contain NUL"),
    ],
)
def test_error_headers_are_refused_unless_names_are_tokens_and_values_one_line(
    headers: str, message: str
) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        load_text(f"rules:\n  - fault: {{type: error, headers: {headers}}}\n")


def test_error_header_values_may_be_numbers_and_booleans() -> None:
    scenario = load_text("rules: [{fault: {type: error, headers: {Retry-After: 3, X-On: true}}}]")
    assert scenario.rules[0].fault[0].headers == {"Retry-After": "3", "X-On": "true"}
