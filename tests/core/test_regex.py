"""core/regex.py: which construct RE2 refuses, and Python's parser errors, narrowly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chaosproxy.core import regex


def test_unsupported_names_the_construct_re2_refuses() -> None:
    assert regex.unsupported("(?<=a)b") is not None and "lookbehind" in str(
        regex.unsupported("(?<=a)b")
    )
    assert regex.unsupported("(a)\\1") == regex._REFUSED["GROUPREF"]
    assert regex.unsupported("a+b") is None


@pytest.mark.parametrize("pattern", ["(", "a{5,2}", "a{99999999999999999999}", "(" * 3000])
def test_a_pattern_python_cannot_parse_is_not_an_unsupported_construct(pattern: str) -> None:
    assert regex.unsupported(pattern) is None  # re.error, OverflowError, RecursionError


def test_a_syntax_error_gets_pythons_message() -> None:
    with pytest.raises(regex.RegexError, match="missing \\)") as caught:
        regex.compile_re2("(")
    assert caught.value.invalid


def test_an_unexpected_failure_of_the_parser_is_not_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def parse(pattern: str) -> None:
        raise TypeError("a bug, not a pattern error")

    monkeypatch.setattr(regex, "_sre", SimpleNamespace(parse=parse))
    with pytest.raises(TypeError, match="a bug"):
        regex.unsupported("a")
