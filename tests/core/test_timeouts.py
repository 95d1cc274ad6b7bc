"""``--upstream-timeout`` values."""

from __future__ import annotations

import pytest

from chaosproxy.core.timeouts import Timeouts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30s", Timeouts(30.0, 30.0)),
        ("500ms", Timeouts(0.5, 0.5)),
        ("2", Timeouts(2.0, 2.0)),
        ("connect=2s", Timeouts(2.0, 60.0)),
        ("read=2m", Timeouts(10.0, 120.0)),
        ("connect=1s, read=5s", Timeouts(1.0, 5.0)),
        ("read=off", Timeouts(10.0, None)),
        ("off", Timeouts(None, None)),
    ],
)
def test_parse(text: str, expected: Timeouts) -> None:
    assert Timeouts.parse(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("soon", "is not a duration"),
        ("0s", "must be above 0"),
        ("-1s", "is not a duration"),
        ("write=5s", "write DURATION, or connect=DURATION,read=DURATION"),
        ("connect=", "is not a duration"),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Timeouts.parse(text)


def test_of_takes_what_the_python_api_gets() -> None:
    assert Timeouts.of(None) == Timeouts(10.0, 60.0)
    assert Timeouts.of(1.5) == Timeouts(1.5, 1.5)
    assert Timeouts.of("read=3s") == Timeouts(10.0, 3.0)
    assert Timeouts.of(Timeouts(None, 1.0)) == Timeouts(None, 1.0)
    with pytest.raises(ValueError, match="above 0"):
        Timeouts.of(0)
    with pytest.raises(TypeError):
        Timeouts.of([1])  # type: ignore[arg-type]


def test_describe() -> None:
    assert Timeouts(10.0, None).describe() == "connect 10s, read off"
