from __future__ import annotations

import pytest

from chaosproxy.core import units


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("500us", 0.0005),
        (" 3 s ", 3.0),
        (".5s", 0.5),
        ("10", 10.0),
        (2, 2.0),
        (0.1, 0.1),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["soon", "5 parsecs", "-1s", "1.2.3s", "", "ms", True, -3, float("nan")]
)
def test_bad_durations_say_what_a_duration_is(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        units.parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("10KB", 10_000),
        ("10kb", 10_000),
        ("1MB", 1_000_000),
        ("10KiB", 10_240),
        ("1MiB", 1_048_576),
        ("3b", 3),
        (4096, 4096),
    ],
)
def test_sizes_use_si_kb_and_binary_kib(text: object, size: int) -> None:
    assert units.parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10KB/s", 10_000.0), ("1MiB/s", 1_048_576.0), ("100 / s", 100.0), (2500, 2500.0)],
)
def test_rates(text: object, rate: float) -> None:
    assert units.parse_rate(text) == rate


@pytest.mark.parametrize("bad", ["10KB", "fast", "10KB/min"])
def test_bad_rates(bad: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        units.parse_rate(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.3, "300ms"), (1.5, "1.5s"), (120, "2m"), (7200, "2h"), (90, "90s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert units.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [(0, "fault", "0 faults"), (1, "fault", "1 fault"), (2, "request", "2 requests")],
)
def test_counted_agrees_with_the_number(n: int, noun: str, text: str) -> None:
    assert units.counted(n, noun) == text
