"""The ``grpc_status`` fault: its parameters, and the trailers-only answer it gives."""

from __future__ import annotations

import asyncio

import pytest

from chaosproxy.core.fault import Wire
from chaosproxy.core.scenario import ScenarioError, load_text
from chaosproxy.faults.grpc_status import GrpcStatus
from tests.faults.fakewire import FakeWire


def run(fault: GrpcStatus, wire: FakeWire) -> list[tuple]:
    typed: Wire = wire
    asyncio.run(fault.apply(typed))
    return wire.actions


@pytest.mark.parametrize(
    ("code", "number"), [("UNAVAILABLE", 14), (14, 14), ("14", 14), (0, 0), ("OK", 0), (16, 16)]
)
def test_code_by_name_or_number(code: object, number: int) -> None:
    assert GrpcStatus(code=code).code == number


def test_answers_trailers_only_with_the_status_in_the_headers() -> None:
    fault = GrpcStatus(code="UNAVAILABLE", message="down for maintenance: 100%")
    assert run(fault, FakeWire()) == [
        (
            "respond",
            200,
            {
                "content-type": "application/grpc",
                "grpc-status": "14",
                "grpc-message": "down for maintenance: 100%25",
            },
            b"",
        )
    ]


def test_default_message_names_the_rule_and_an_empty_one_is_left_out() -> None:
    (action,) = run(GrpcStatus(code=8), FakeWire(rule="quota"))
    assert action[2]["grpc-message"] == "RESOURCE_EXHAUSTED injected by chaosproxy (rule quota)"
    (action,) = run(GrpcStatus(code=8, message=""), FakeWire())
    assert "grpc-message" not in action[2]


def test_delay_counts_from_arrival_and_a_client_that_left_gets_nothing() -> None:
    actions = run(GrpcStatus(code=14, delay=0.25), FakeWire(arrival=1000.0))
    assert actions[0] == ("sleep_until", 1000.25) and actions[1][0] == "respond"
    assert run(GrpcStatus(code=14, delay=0.25), FakeWire(client_leaves=True)) == [
        ("sleep_until", 1000.25)
    ]


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        ("{type: grpc_status, code: UNAVAILABLE}", "grpc_status UNAVAILABLE (14)"),
        (
            "{type: grpc_status, code: 4, delay: 1.5s}",
            "grpc_status DEADLINE_EXCEEDED (4) after 1.5s",
        ),
    ],
)
def test_describe(fault: str, text: str) -> None:
    assert load_text(f"rules: [{{fault: {fault}}}]").rules[0].describe() == text


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("{type: grpc_status}", "rules[0].fault: missing required key 'code'"),
        (
            "{type: grpc_status, code: unavailable}",
            "rules[0].fault.code: unknown gRPC status 'unavailable' (did you mean 'UNAVAILABLE'?)",
        ),
        ("{type: grpc_status, code: 17}", "rules[0].fault.code: gRPC status codes are 0 to 16"),
        ("{type: grpc_status, code: -1}", "rules[0].fault.code: gRPC status codes are 0 to 16"),
        ("{type: grpc_status, code: true}", "rules[0].fault.code: unknown gRPC status true;"),
        ("{type: grpc_status, code: null}", "rules[0].fault.code: unknown gRPC status null;"),
        ("{type: grpc_status, code: 14, delay: 11m}", "delay of 11m is longer than 10m"),
        ("{type: grpc_status, code: 14, status: 503}", "unknown key 'status'"),
    ],
)
def test_bad_parameters_are_located(fault: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_text(f"rules: [{{fault: {fault}}}]", "s.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("s.yaml:1:")


def test_long_delay_allowed() -> None:
    fault = load_text(
        "rules: [{fault: {type: grpc_status, code: 14, delay: 11m, allow_long: true}}]"
    )
    assert fault.rules[0].fault[0].delay == 660.0
