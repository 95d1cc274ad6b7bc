"""Exploration's pure parts: identities, the plan and its budget, tokens, the targeting
decider, the report (the pytest side runs in tests/plugin/test_explore.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from chaosproxy.testing import explorer_report
from chaosproxy.testing.explore import (
    MENU,
    Call,
    Run,
    Settings,
    Targeting,
    body_shape,
    check_settings,
    identify,
    labels,
    plan,
    route_template,
    singles_of,
)
from chaosproxy.testing.explorer import Explorer, base_nodeid


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/orders/1234/items", "/orders/{id}/items"),
        ("/users/3f2b8c1e-4a5d-4e6f-9a0b-1c2d3e4f5a6b", "/users/{id}"),
        ("/blobs/deadbeef42", "/blobs/{id}"),
        ("/sessions/AbC123xyz_987-long-token", "/sessions/{id}"),
        ("/v1/forecast/berlin", "/v1/forecast/berlin"),
        ("/v2/items", "/v2/items"),  # short words with digits stay
        ("/", "/"),
    ],
)
def test_route_template_replaces_ids_only(path: str, template: str) -> None:
    assert route_template(path) == template


@pytest.mark.parametrize(
    ("content_type", "body", "shape"),
    [
        ("application/json", b"", ""),
        ("application/json", b'{"b": 1, "a": {"y": [1], "x": "s"}}', "{a{x,y[]},b}"),
        ("application/json", b'[{"id": 1}, {"id": 2, "extra": 3}]', "[{id}]"),
        ("application/json", b"42", "json"),
        ("application/x-www-form-urlencoded", b"q=1&a=2&q=3", "form{a,q}"),
        ("application/octet-stream", b"\x00\x01", "bytes"),
    ],
)
def test_body_shape_keeps_keys_not_values(content_type: str, body: bytes, shape: str) -> None:
    assert body_shape(content_type, body) == shape


@dataclass
class View:
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    content: bytes = b""
    host: str = "upstream"
    upstream: str | None = None
    url: str = ""

    def header(self, name: str) -> list[str]:
        found = {k.lower(): v for k, v in self.headers.items()}.get(name.lower())
        return [found] if found is not None else []

    def query(self, name: str) -> list[str]:
        return [self.params[name]] if name in self.params else []

    def body(self) -> bytes:
        return self.content


def test_identify_by_shape_or_by_a_key() -> None:
    a = View("POST", "/pay/12", {"Content-Type": "application/json"}, content=b'{"amount": 1}')
    b = View("POST", "/pay/99", {"Content-Type": "application/json"}, content=b'{"amount": 7}')
    assert identify(a) == identify(b) == Call("POST", "/pay/{id}", "{amount}")
    op = View("POST", "/graphql", {"X-Op": "checkout"}, content=b'{"query": "..."}')
    assert identify(op, "header:X-Op") == Call("POST", "/graphql", "header:X-Op=checkout")
    assert identify(View(params={"page": "2"}), "query:page").shape == "query:page=2"


def test_labels_add_the_shape_only_where_method_and_route_repeat() -> None:
    calls = [Call("GET", "/a"), Call("POST", "/q", "{x}"), Call("POST", "/q", "{y}")]
    assert list(labels(calls).values()) == ["GET /a", "POST /q {x}", "POST /q {y}"]


CALLS = [Call("GET", "/a"), Call("POST", "/b", "{x}"), Call("GET", "/c")]


def test_plan_orders_calls_first_made_then_the_menu_and_counts_what_the_budget_leaves() -> None:
    runs, over = plan("t.py::test", CALLS, ["503", "reset"], Settings())
    assert [r.id for r in runs] == [
        "explore: no fault",
        "explore: GET /a x 503",
        "explore: GET /a x reset",
        "explore: POST /b x 503",
        "explore: POST /b x reset",
        "explore: GET /c x 503",
        "explore: GET /c x reset",
    ]
    assert over == 0
    runs, over = plan("t.py::test", CALLS, ["503", "reset"], Settings(), max_runs=3)
    assert [r.id for r in runs][1:] == [
        "explore: GET /a x 503",
        "explore: GET /a x reset",
        "explore: POST /b x 503",
    ]
    assert over == 3


def test_depth_two_adds_pairs_after_the_singles_within_the_budget() -> None:
    runs, over = plan("t.py::test", CALLS, ["503"], Settings(), depth=2, max_runs=5)
    assert [r.id for r in runs][1:] == [
        "explore: GET /a x 503",
        "explore: POST /b x 503",
        "explore: GET /c x 503",
        "explore: GET /a + POST /b x 503",
        "explore: GET /a + GET /c x 503",
    ]
    assert over == 1
    assert [r.kind for r in runs] == ["baseline", "single", "single", "single", "pair", "pair"]
    assert [s.id for s in singles_of(runs[4])] == [
        "explore: GET /a x 503",
        "explore: POST /b x 503",
    ]


def test_a_token_is_the_run_and_replays_it() -> None:
    run = Run(
        "t.py::test[1]", (CALLS[1],), ("POST /b",), "429", Settings(attempts=2, retry_after=3), 9
    )
    token = run.token()
    assert len(token) < 160 and token.replace("-", "").replace("_", "").isalnum()
    assert Run.from_token(token) == run
    with pytest.raises(ValueError, match="is not a replay token"):
        Run.from_token("nonsense")
    with pytest.raises(ValueError, match="is not a replay token"):
        Run.from_token(token[:-4])


@pytest.mark.parametrize("fault", MENU)
@pytest.mark.parametrize("attempts", ["all", 2])
def test_every_fault_of_the_menu_is_a_valid_scenario(fault: str, attempts: Any) -> None:
    run = Run("t.py::test", (CALLS[0],), ("GET /a",), fault, Settings(attempts=attempts))
    scenario = run.scenario()
    (rule,) = scenario.rules
    assert rule.label == f"explore-{fault}" and rule.match.empty
    assert (rule.per_request.times if rule.per_request else "all") == attempts
    assert Run("t.py::test").scenario().rules == ()


def test_the_429_says_retry_after_and_hang_and_latency_take_the_settings() -> None:
    def spec(fault: str) -> dict[str, Any]:
        return Run(
            "t", (CALLS[0],), ("a",), fault, Settings(latency="80ms", hang="2s")
        ).fault_spec()

    assert spec("429") == {"type": "error", "status": 429, "headers": {"Retry-After": "1"}}
    assert spec("hang") == {"type": "timeout", "after": "2s", "then": "close"}
    assert spec("latency") == {"type": "latency", "delay": "80ms", "on": "response"}


@pytest.mark.parametrize(
    ("faults", "attempts", "key", "message"),
    [
        (["503", "boom"], "all", None, "unknown fault.*boom.*the menu: 503, 429"),
        ("503", "all", None, "faults must be a list"),
        (None, 0, None, "attempts must be"),
        (None, True, None, "attempts must be"),
        (None, "all", "cookie:x", "key .cookie:x. is not header:NAME or query:NAME"),
    ],
)
def test_bad_settings_are_refused_saying_where(
    faults: Any, attempts: Any, key: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^here: {message}"):
        check_settings(faults, attempts, key, "here")


def test_check_settings_defaults_to_the_whole_menu() -> None:
    assert check_settings(None, "all", None, "x") == (MENU, "all", None)
    assert check_settings(["reset"], 3, "header:Idempotency-Key", "x") == (
        ("reset",),
        3,
        "header:Idempotency-Key",
    )


class Inner:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def decide_early(self, view: Any) -> tuple[bool, Any]:
        return True, None

    def decide(self, view: Any, request: Any) -> Any:
        self.asked.append(view.path)
        return "decision"


def test_targeting_records_calls_in_first_order_and_lets_only_targets_reach_the_engine() -> None:
    inner = Inner()
    targeting = Targeting(inner)
    targeting.begin(None, None)
    for path in ("/a", "/c/1", "/a", "/c/2"):
        assert targeting.decide(View(path=path), None) == "decision"
    assert targeting.decide_early(View()) == (False, None)  # the body is part of the identity
    assert targeting.end() == [Call("GET", "/a"), Call("GET", "/c/{id}")]

    inner.asked.clear()
    targeting.begin([Call("GET", "/c/{id}")], None)
    assert [targeting.decide(View(path=p), None) for p in ("/a", "/c/3")] == [None, "decision"]
    assert inner.asked == ["/c/3"] and targeting.reached == {Call("GET", "/c/{id}")}
    targeting.end()
    assert targeting.targets is None

    # after end(), until the next begin(), the inner decider decides alone, early too
    inner.asked.clear()
    assert targeting.decide_early(View()) == (True, None)
    assert targeting.decide(View(path="/z/9"), None) == "decision"
    assert inner.asked == ["/z/9"] and Call("GET", "/z/{id}") not in targeting.seen


@pytest.mark.parametrize(
    ("nodeid", "base"),
    [
        ("t.py::test_x[explore: GET /a x 503]", "t.py::test_x"),
        ("t.py::test_x[1-explore: GET /a x 503]", "t.py::test_x[1]"),
        ("t.py::test_x", "t.py::test_x"),
    ],
)
def test_base_nodeid_drops_the_exploration_parameter(nodeid: str, base: str) -> None:
    assert base_nodeid(nodeid, Run("t.py::test_x", (CALLS[0],), ("GET /a",), "503")) == base


def entry(
    order: int, kind: str, calls: list[str], fault: str | None, status: str, message: str = ""
) -> dict[str, Any]:
    return {
        "test": "t.py::test",
        "order": order,
        "kind": kind,
        "calls": calls,
        "fault": fault,
        "status": status,
        "message": message,
        "reached": calls,
        "replay": f"pytest t.py::test --chaos-replay T{order}",
        "token": f"T{order}",
    }


RESULTS = [
    {
        **entry(0, "baseline", [], None, "passed"),
        "recorded": ["GET /a", "GET /b"],
        "menu": ["503", "reset"],
        "over_budget": 1,
        "recording_failed": [],
    },
    entry(2, "single", ["GET /a"], "reset", "passed"),  # out of order: sorted by item order
    entry(1, "single", ["GET /a"], "503", "passed"),
    entry(3, "single", ["GET /b"], "503", "failed", "AssertionError: assert 503 == 200"),
    entry(4, "single", ["GET /b"], "reset", "skipped", "explore: repeat of a run of t.py::other"),
    entry(
        5,
        "pair",
        ["GET /a", "GET /b"],
        "503",
        "skipped",
        "explore: GET /b x 503 already fails alone",
    ),
]


def test_the_report_is_a_table_of_calls_by_faults_with_each_failure_and_its_replay() -> None:
    assert explorer_report.lines(RESULTS) == [
        "t.py::test: 2 calls x 2 faults; 5 runs: 2 passed, 1 failed, 2 skipped (1 repeats); "
        "1 left out by the budget",
        "  call    503   reset",
        "  GET /a  pass  pass",
        "  GET /b  FAIL  skip",
        "  pair GET /a + GET /b x 503: skip (explore: GET /b x 503 already fails alone)",
        "  FAIL GET /b x 503: AssertionError: assert 503 == 200",
        "    replay: pytest t.py::test --chaos-replay T3",
        "explored 1 test: 5 runs, 2 passed, 1 failed, 2 skipped (1 repeat an identity already "
        "explored), 1 left out by the budget",
    ]


def test_the_json_report_holds_the_same(tmp_path: Any) -> None:
    path = tmp_path / "out.json"
    explorer_report.write_json(RESULTS, path)
    doc = json.loads(path.read_text())
    assert doc["totals"] == {
        "runs": 5,
        "passed": 2,
        "failed": 1,
        "skipped": 2,
        "repeats": 1,
        "over_budget": 1,
    }
    (test,) = doc["tests"]
    assert test["calls"] == ["GET /a", "GET /b"] and test["faults"] == ["503", "reset"]
    failed = [r for r in test["runs"] if r["status"] == "failed"]
    assert failed == [
        {
            "calls": ["GET /b"],
            "fault": "503",
            "status": "failed",
            "reached": ["GET /b"],
            "replay": "pytest t.py::test --chaos-replay T3",
            "token": "T3",
            "message": "AssertionError: assert 503 == 200",
            "reason": "",
        }
    ]


class Options:
    """What Explorer reads of a pytest config: the command line's options."""

    def __init__(self, **given: Any) -> None:
        self.given = given

    def getoption(self, name: str) -> Any:
        return self.given.get(name)


class Node:
    def __init__(self, **kwargs: Any) -> None:
        self.mark = pytest.mark.chaos_explore(**kwargs).mark
        self.nodeid = "t.py::test"

    def get_closest_marker(self, name: str) -> Any:
        return self.mark if name == "chaos_explore" else None


def explorer(**options: Any) -> Explorer:
    return Explorer(Options(**options), None, [])  # type: ignore[arg-type]


def test_the_marker_wins_over_the_command_line_and_bad_arguments_fail_the_collection() -> None:
    cli = explorer(chaos_explore_max="4")
    menu, settings, max_runs = cli.settings_of(Node(faults=["reset"], attempts=2, latency="5ms"))
    assert (menu, settings.attempts, settings.latency, max_runs) == (("reset",), 2, "5ms", 4)
    assert cli.settings_of(Node(max=1))[2] == 1
    assert explorer().settings_of(Node())[0] == MENU and explorer().seed == 1
    with pytest.raises(pytest.fail.Exception, match="takes keyword arguments only .* got budget"):
        cli.settings_of(Node(budget=3))
    with pytest.raises(pytest.fail.Exception, match="max: 'x' is not a whole number"):
        cli.settings_of(Node(max="x"))
    with pytest.raises(pytest.UsageError, match="--chaos-explore-depth"):
        explorer(chaos_explore_depth="3")
