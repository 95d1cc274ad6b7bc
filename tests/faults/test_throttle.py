"""``throttle``: the model, its pacing, and the rules it cannot share."""

from __future__ import annotations

import asyncio

import pytest

from chaosproxy.core.scenario import ScenarioError, load_data, load_text
from chaosproxy.faults.throttle import Pacing, Throttle, format_size
from tests.faults.fakewire import FakeWire


def test_rate_is_paced_in_slices_of_50ms() -> None:
    pacing = Throttle(type="throttle", rate="10KB/s").pacing()
    assert pacing == Pacing(10_000, 500, 0.0)
    assert pacing.due(18_800) == pytest.approx(1.88)


def test_chunk_and_interval_make_a_rate() -> None:
    pacing = Throttle(type="throttle", chunk="1KB", interval="250ms", first_byte="1s").pacing()
    assert pacing == Pacing(4000, 1000, 1.0)
    assert Throttle(type="throttle", rate=5).pacing().piece == 1


def test_apply_asks_the_wire_to_pace() -> None:
    wire = FakeWire()
    asyncio.run(Throttle(type="throttle", rate="1MB/s").apply(wire))
    assert wire.actions == [("pace", Pacing(1_000_000, 50_000, 0.0))]


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        ({"rate": "10KB/s"}, "throttle 10KB/s"),
        ({"rate": "1.5MB/s", "first_byte": "2s"}, "throttle 1.5MB/s, first byte after 2s"),
        ({"chunk": 512, "interval": "100ms"}, "throttle 512B every 100ms"),
    ],
)
def test_describe(fault: dict, text: str) -> None:
    assert Throttle(type="throttle", **fault).describe() == text


def test_format_size() -> None:
    assert [format_size(n) for n in (999, 1000, 18_800, 2_000_000)] == [
        "999B",
        "1KB",
        "18.8KB",
        "2MB",
    ]


@pytest.mark.parametrize(
    "other",
    [
        "{type: malformed, mode: garbage}",
        "{type: error, status: 502, on: response}",
        "{type: latency, delay: 1s, on: response}",
        "{type: abort, on: response}",
    ],
)
def test_a_rule_cannot_throttle_and_act_on_the_whole_answer(other: str) -> None:
    text = f"rules:\n  - name: r\n    fault:\n      - {{type: throttle, rate: 1KB/s}}\n      - {other}\n"
    with pytest.raises(ScenarioError) as err:
        load_text(text, "s.yaml")
    assert str(err.value).startswith(
        "s.yaml:4:7: rules[0].fault: throttle streams the body as it arrives, so it cannot be "
        "combined with faults that act on the whole answer ("
    )
    assert str(err.value).endswith("); put them in separate rules")


def test_a_rule_throttles_once_and_may_wait_first() -> None:
    with pytest.raises(ScenarioError, match="a rule has at most one throttle"):
        load_data(
            {
                "rules": [
                    {"fault": [{"type": "throttle", "rate": 1}, {"type": "throttle", "rate": 2}]}
                ]
            }
        )
    scenario = load_data(
        {
            "rules": [
                {"fault": [{"type": "latency", "delay": "1s"}, {"type": "throttle", "rate": 9}]}
            ]
        }
    )
    assert scenario.rules[0].describe() == "latency 1s + throttle 9B/s"
