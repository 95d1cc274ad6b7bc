"""What the loader refuses, and how matching stays safe (issue 22: items 1, 2, 3, 7, 10).

Each refusal is a located error, ``PATH:LINE:COL: field.path: message``.
"""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("ascii_only", "unicode", "text"),
    [
        ("\\d", "\\p{Nd}", "/order/\u0663"),  # ARABIC-INDIC DIGIT THREE
        ("^/\\w+$", "^/[\\p{L}\\p{N}_]+$", "/café"),
        ("a\\sb", "a\\p{Z}b", "a\u00a0b"),  # NO-BREAK SPACE
        ("\\bé", "(^|[^\\p{L}\\p{N}_])é", "é"),
    ],
)
def test_perl_classes_are_ascii_only_in_re2_and_unicode_classes_widen_them(
    ascii_only: str, unicode: str, text: str
) -> None:
    """RE2's \\d, \\w, \\s and \\b see ASCII only, where Python's re sees Unicode (the
    scenarios page says so, with these alternatives). Pinned, so a change is deliberate."""
    assert re.search(ascii_only, text)  # what a pattern written for Python's re expected
    assert not compile_pattern(f"re:{ascii_only}")(text)
    assert compile_pattern(f"re:{unicode}")(text)


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
    from chaosproxy.core.fault import error_body
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


# --------------------------------------------------------------------------- 7: deep, huge


@pytest.mark.parametrize(
    "text",
    [
        "rules: " + "[" * 500 + "]" * 500 + "\n",
        "rules: " + "{a: " * 500 + "1" + "}" * 500 + "\n",
        "rules:\n" + "".join("  " * i + "- \n" for i in range(1, 500)),
        "x: &a " + "[" * 5000 + "]" * 5000 + "\n",
    ],
    ids=["flow-lists", "flow-maps", "block-lists", "deeper"],
)
def test_yaml_nested_hundreds_of_levels_is_a_located_error(text: str) -> None:
    lines = problems(text)
    assert len(lines) == 1 and re.match(r"^s\.yaml:\d+:\d+: ", lines[0]), lines
    assert "scenario: too deeply nested (more than 64 levels)" in lines[0], lines


def test_json_nested_hundreds_of_levels_is_a_located_error_too() -> None:
    # tabs make it JSON that YAML refuses, so the JSON fallback reads it
    lines = problems('{\t"rules": ' + "[" * 5000 + "]" * 5000 + "}")
    assert "too deeply nested" in lines[0], lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed: " + "9" * 5000 + "\n", "s.yaml:1:7: seed: a number of 5000 digits is too long"),
        (
            "rules:\n  - fault: {type: error, status: " + "5" * 5000 + "}\n",
            "s.yaml:2:34: rules[0].fault.status: a number of 5000 digits is too long",
        ),
        ('{\t"seed": ' + "1" * 5000 + "}", "s.yaml: seed: a number of 5000 digits is too long"),
    ],
)
def test_a_5000_digit_integer_is_a_located_error(text: str, expected: str) -> None:
    refused(text, expected)


@pytest.mark.parametrize(
    ("dotted", "why"),
    [
        ("items.²", "'²' is not an index: array indexes are ASCII digits"),
        ("items.٣", "'٣' is not an index: array indexes are ASCII digits"),
        ("a..b", "an empty part"),
        (".a", "an empty part"),
        ("a.", "an empty part"),
        ("", "an empty part"),
    ],
)
def test_match_json_paths_that_could_never_be_looked_up_are_refused(dotted: str, why: str) -> None:
    text = f'rules:\n  - match: {{json: {{"{dotted}": x}}}}\n    fault: {{type: error}}\n'
    lines = problems(text)
    assert lines[0].startswith("s.yaml:2:") and "rules[0].match.json" in lines[0], lines
    assert f"JSON path {dotted!r}" in lines[0] and why in lines[0], lines


def test_match_json_paths_with_indexes_load() -> None:
    scenario = sc.load_text(
        "rules:\n  - match: {json: {items.0.id: '7', items.-1.id: '9', a_b.c-d: x}}\n"
        "    fault: {type: error}\n"
    )
    assert set(scenario.rules[0].match.json_) == {"items.0.id", "items.-1.id", "a_b.c-d"}


def test_a_body_nested_100000_levels_does_not_match_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from chaosproxy.core import engine as engine_mod

    scenario = sc.load_text("rules:\n  - match: {json: {a: x}}\n    fault: {type: error}\n")
    engine = Engine(scenario, seed=1)
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    before = engine_mod.UNREADABLE_BODIES.count
    with caplog.at_level("WARNING", logger="chaosproxy"):
        for _ in range(50):
            assert engine.decide(SimpleRequest("POST", "h", "/x", content=deep)) is None
        ok = SimpleRequest("POST", "h", "/x", content=b'{"a": "x"}')
        assert engine.decide(ok) is not None
    assert engine_mod.UNREADABLE_BODIES.count - before == 50
    lines = [r for r in caplog.records if "nested too deeply" in r.getMessage()]
    assert len(lines) <= 1, [r.getMessage() for r in lines]  # one line, not one per request
    assert not any(r.exc_info for r in caplog.records)  # and no traceback


def test_a_counted_warning_logs_at_most_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from chaosproxy.core.oncelog import CountedWarning

    now = [100.0]
    warning = CountedWarning(logging.getLogger("chaosproxy"), "odd body", 60, lambda: now[0])
    with caplog.at_level("WARNING", logger="chaosproxy"):
        for _ in range(130):  # one a second for 130 s
            warning.note()
            now[0] += 1
    lines = [r.getMessage() for r in caplog.records]
    assert warning.count == 130
    assert lines == [
        "odd body (1 time since the last such line, 1 in all; logged at most every 60s)",
        "odd body (60 times since the last such line, 61 in all; logged at most every 60s)",
        "odd body (60 times since the last such line, 121 in all; logged at most every 60s)",
    ]


# --------------------------------------------------------------------------- 10: ttl, jitter


@pytest.mark.parametrize("ttl", ["0", "0s", "0ms", "-1"])
def test_a_ttl_of_zero_is_refused(ttl: str) -> None:
    lines = problems(f"ttl: {ttl}\nrules: []\n")
    assert lines[0].startswith("s.yaml:1:6: ttl: "), lines
    assert "must be above 0" in lines[0] or "must be a finite number >= 0" in lines[0], lines


def test_a_ttl_above_zero_loads() -> None:
    assert sc.load_text("ttl: 1ms\nrules: []\n").ttl == 0.001


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "{type: latency, delay: 100ms, jitter: 150ms}",
            "jitter (150ms) is larger than delay (100ms)",
        ),
        ("{type: latency, delay: 0, jitter: 1ms}", "jitter (1ms) is larger than delay (0ms)"),
    ],
)
def test_jitter_larger_than_delay_is_refused(fault: str, message: str) -> None:
    refused(f"rules:\n  - fault: {fault}\n", f"s.yaml:2:12: rules[0].fault: {message}")


def test_jitter_equal_to_delay_loads() -> None:
    fault = sc.load_text("rules: [{fault: {type: latency, delay: 100ms, jitter: 100ms}}]").rules[0]
    assert fault.fault[0].jitter == 0.1
