from __future__ import annotations

import math

import pytest

from chaosproxy.core.yamlsource import YamlSourceError, format_path, parse


def test_scalars_resolve_as_yaml_1_2() -> None:
    doc = parse(
        "a: on\nb: yes\nc: no\nd: true\ne: False\nf: 12\ng: 1.5\nh: ~\ni: 0x1f\nj: 1e3\nk: .inf\nl: '5'\nm: 250ms\n"
    )
    assert doc.data == {
        "a": "on",
        "b": "yes",
        "c": "no",
        "d": True,
        "e": False,
        "f": 12,
        "g": 1.5,
        "h": None,
        "i": 31,
        "j": 1000.0,
        "k": math.inf,
        "l": "5",
        "m": "250ms",
    }


def test_keys_stay_text_so_on_is_a_key_not_true() -> None:
    doc = parse("fault: {type: error, on: response}")
    assert doc.data == {"fault": {"type": "error", "on": "response"}}


def test_values_under_match_and_headers_keep_their_source_text() -> None:
    doc = parse(
        "match:\n  headers: {X-Version: 1.10, X-On: true}\n  query: {page: 007}\nheaders: {Retry-After: 2}\nother: 1.10"
    )
    assert doc.data["match"] == {
        "headers": {"X-Version": "1.10", "X-On": "true"},
        "query": {"page": "007"},
    }
    assert doc.data["headers"] == {"Retry-After": "2"}
    assert doc.data["other"] == 1.1


def test_positions_are_one_based_for_values_and_keys() -> None:
    doc = parse("rules:\n  - name: x\n    probability: 2\n")
    assert doc.values[("rules", 0, "probability")] == (3, 18)
    assert doc.keys[("rules", 0, "probability")] == (3, 5)
    assert doc.position(("rules", 0, "missing", "deeper")) == (2, 5)


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch /tmp/chaosproxy-pwned']",
        "!!binary aGVsbG8=",
        "!custom x",
        "!!set {a, b}",
    ],
)
def test_tags_beyond_plain_yaml_are_refused_not_constructed(tag: str, tmp_path) -> None:
    doc = parse(f"a: 1\nb: {tag}\n")
    assert doc.data["b"] is None
    [(path, problem)] = doc.problems
    assert path == ("b",)
    assert "unsupported YAML tag" in problem.message
    assert (problem.line, problem.col) == (2, 4)


def test_explicit_plain_tags_are_fine() -> None:
    assert parse("a: !!str 5\nb: !!int '7'\nc: !!float 2").data == {"a": "5", "b": 7, "c": 2.0}
    doc = parse("a: !!int nope")
    assert "not a valid !!int" in doc.problems[0][1].message


def test_duplicate_keys_are_reported_with_the_first_line() -> None:
    doc = parse("name: a\nseed: 1\nname: b\n")
    [(_, problem)] = doc.problems
    assert problem.message == "duplicate key 'name' (first at line 1)"
    assert problem.line == 3


def test_merge_keys_share_pieces_and_own_keys_win() -> None:
    doc = parse("base: &b {type: latency, delay: 1s, on: response}\nrule: {<<: *b, delay: 2s}\n")
    assert doc.data["rule"] == {"type": "latency", "delay": "2s", "on": "response"}
    assert doc.values[("rule", "delay")] == (2, 23)
    assert doc.values[("rule", "type")] == (1, 17)


def test_alias_bombs_and_recursion_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(8):
        name = f"l{i}"
        bomb += f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = name
    with pytest.raises(YamlSourceError, match="too many values"):
        parse(bomb)
    with pytest.raises(YamlSourceError, match="too deeply nested"):
        parse("a: &a [*a]")


def test_syntax_errors_carry_their_line() -> None:
    with pytest.raises(YamlSourceError) as err:
        parse("rules:\n  - name: a\n   fault: x\n")
    [problem] = err.value.problems
    assert problem.field == "syntax"
    assert problem.line == 3


def test_json_with_tabs_is_accepted() -> None:
    assert parse('{\n\t"rules": []\n}').data == {"rules": []}


def test_empty_document() -> None:
    with pytest.raises(YamlSourceError, match="empty"):
        parse("# only a comment\n")


def test_format_path() -> None:
    assert format_path(("rules", 0, "fault", "status")) == "rules[0].fault.status"
    assert format_path(()) == "scenario"
