"""What the loader refuses, and how matching stays safe (issue 22: items 1, 2, 3, 7, 10).

Each refusal is a located error, ``PATH:LINE:COL: field.path: message``.
"""

from __future__ import annotations

import time

import pytest

from chaosproxy.core import scenario as sc
from chaosproxy.core.engine import Engine, SimpleRequest, compile_pattern


def problems(text: str) -> list[str]:
    with pytest.raises(sc.ScenarioError) as err:
        sc.load_text(text, "s.yaml")
    return err.value.lines


def refused(text: str, expected: str) -> None:
    lines = problems(text)
    assert any(line.startswith(expected) for line in lines), lines


# --------------------------------------------------------------------------- 2: RE2

#: The issue's patterns: Python's backtracking ``re`` took seconds on a 37-character path.
SLOW_IN_PYTHON = ["(a|aa){1,1000}$", "(a{1,30}){1,30}$", "(a+)+$", "(\\w+\\s?)+$", "(a|ab)*c"]


@pytest.mark.parametrize("pattern", SLOW_IN_PYTHON)
def test_patterns_that_backtrack_in_python_load_and_match_in_linear_time(pattern: str) -> None:
    scenario = sc.load_text(
        f"rules:\n  - match: {{path: 're:{pattern}'}}\n    fault: {{type: error}}\n"
    )
    engine = Engine(scenario, seed=1)
    path = "/" + "a" * 36 + "!"  # 37 characters, no match: the worst case for backtracking
    start = time.perf_counter()
    for _ in range(100):
        engine.decide(SimpleRequest("GET", "h", path))
    assert time.perf_counter() - start < 0.5  # RE2: microseconds each; Python's re: seconds


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        ("(?=a)(a|aa){1,100}$", "a lookahead or lookbehind"),
        ("(?!x)a+", "a lookahead or lookbehind"),
        ("(?<=/)v1", "a lookahead or lookbehind"),
        ("(?<!x)a", "a lookahead or lookbehind"),
        ("(\\w+)/\\1", "a backreference"),
        ("(?P<x>a)(?P=x)", "a backreference"),
        ("([^/]+/)*+items$", "a possessive repetition"),
        ("(?>(a+))+$", "an atomic group"),
        ("(a)?(?(1)b|c)", "a conditional group"),
    ],
)
def test_constructs_re2_does_not_support_are_refused_with_a_located_error(
    pattern: str, construct: str
) -> None:
    lines = problems(f"rules:\n  - match: {{path: 're:{pattern}'}}\n    fault: {{type: error}}\n")
    assert lines[0].startswith(
        f"s.yaml:2:19: rules[0].match.path: regular expression {pattern!r}: "
    ), lines
    assert f"uses {construct} (" in lines[0] and "which RE2 does not support" in lines[0]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[", "invalid regular expression '[': unterminated character set"),
        ("a\\Z", "\\Z is not RE2 syntax: write \\z (end of text) or $"),
        ("((a{1,1000}){1,1000}){1,1000}", "RE2 cannot compile it (too large"),
    ],
)
def test_invalid_or_too_large_regexes_are_refused(pattern: str, message: str) -> None:
    lines = problems(f"rules:\n  - match: {{body: 're:{pattern}'}}\n    fault: {{type: error}}\n")
    assert "rules[0].match.body: " in lines[0] and message in lines[0], lines


@pytest.mark.parametrize(
    ("pattern", "text", "hit"),
    [
        ("re:^/v1/(forecast|alerts)/", "/v1/alerts/x", True),
        ("re:^/v1/(forecast|alerts)/", "/v2/alerts/x", False),
        ("re:items$", "/a/items", True),  # search, not match: anywhere in the text
        ("re:\\d{3}", "/order/1234", True),
        ("re:(?i)ACME", "acme-corp", True),
        ("re:é+$", "/café", True),
    ],
)
def test_re2_search_semantics(pattern: str, text: str, hit: bool) -> None:
    assert compile_pattern(pattern)(text) is hit


def test_re2_ignore_case_for_hosts() -> None:
    assert compile_pattern("re:^WEATHER\\.", ignore_case=True)("weather.example")
    assert not compile_pattern("re:^WEATHER\\.")("weather.example")


# --------------------------------------------------------------------------- 1: statuses

INTERIM = "is an interim status (1xx), which no fault may answer with"


@pytest.mark.parametrize(
    ("fault", "field", "col"),
    [
        ("{type: error, status: 101}", "status", 34),
        ("{type: error, status: 100, on: response}", "status", 34),
        ("{type: rate_limit, limit: 1, status: 199}", "status", 49),
        ("{type: timeout, after: 1s, then: 103}", "then", 45),
        ("{type: timeout, after: 1s, then: '150'}", "then", 45),
    ],
)
def test_1xx_statuses_are_refused_with_a_located_error(fault: str, field: str, col: int) -> None:
    refused(f"rules:\n  - fault: {fault}\n", f"s.yaml:2:{col}: rules[0].fault.{field}: ")
    assert INTERIM in " ".join(problems(f"rules:\n  - fault: {fault}\n"))


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("body", ["body: gone", "json: {a: 1}"])
def test_a_204_or_304_error_cannot_carry_a_body(status: int, body: str) -> None:
    refused(
        f"rules:\n  - fault: {{type: error, status: {status}, {body}}}\n",
        f"s.yaml:2:12: rules[0].fault: a {status} answer has no body: drop body and json",
    )


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses_answer_with_no_body_and_no_content_type(status: int) -> None:
    from chaosproxy.faults.base import error_body
    from chaosproxy.faults.error import Error

    headers, body = Error(status=status).payload("r")
    assert body == b"" and "content-type" not in headers
    assert error_body(status, "r") == b""
    assert error_body(503, "r").startswith(b"{")


# --------------------------------------------------------------------------- 3: headers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'rules:\n  - fault: {type: error, headers: {X-A: "b\\r\\nSet-Cookie: evil=1"}}\n',
            "s.yaml:2:41: rules[0].fault.headers.X-A: a header value may not contain CR",
        ),
        (
            'rules:\n  - fault: {type: error, headers: {"Bad Name:": x}}\n',
            "s.yaml:2:35: rules[0].fault.headers: 'Bad Name:' is not a header name: use "
            "letters, digits and !#$%&'*+-.^_`|~",
        ),
        (
            'rules:\n  - fault: {type: error, headers: {X-A: "a\\0b"}}\n',
            "s.yaml:2:41: rules[0].fault.headers.X-A: a header value may not contain NUL",
        ),
        (
            'rules:\n  - match: {headers: {"X A": x}}\n    fault: {type: error}\n',
            "s.yaml:2:23: rules[0].match.headers['X A']: 'X A' is not a header name",
        ),
        (
            'rules:\n  - sticky: "header:X User"\n    fault: {type: error}\n',
            "s.yaml:2:13: rules[0].sticky: 'X User' is not a header name",
        ),
        (
            'rules:\n  - fault: {type: rate_limit, limit: 1, key: "header:a:b"}\n',
            "s.yaml:2:46: rules[0].fault.key: 'a:b' is not a header name",
        ),
        (
            'rules:\n  - name: "\\e[31mred"\n    fault: {type: error}\n',
            "s.yaml:2:11: rules[0].name: '\\x1b[31mred' has control characters; a name is "
            "printable text",
        ),
        (
            'phases:\n  - name: "a\\nb"\n',
            "s.yaml:2:11: phases[0].name: 'a\\nb' has control characters",
        ),
        ('name: "x\\ty"\nrules: []\n', "s.yaml:1:7: name: 'x\\ty' has control characters"),
    ],
)
def test_header_names_values_and_names_are_refused_when_they_could_inject(
    text: str, expected: str
) -> None:
    refused(text, expected)


def test_ordinary_header_names_and_values_load() -> None:
    scenario = sc.load_text(
        "rules:\n  - name: 'café: 50% off'\n    fault: {type: error, headers: "
        "{Retry-After: 2, X-Ok: true, X_Odd.Name~: \"a\\tb, 'c'; d=é\"}}\n"
        "    match: {headers: {X-Tenant: acme}}\n"
    )
    assert scenario.rules[0].fault[0].headers == {
        "Retry-After": "2",
        "X-Ok": "true",
        "X_Odd.Name~": "a\tb, 'c'; d=é",
    }
