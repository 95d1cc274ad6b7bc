"""Fault-space exploration, run as users run it: pytest in a subprocess (pytester) on a
project whose client makes several upstream calls, some without a fallback."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.plugin.projects import new_project

pytestmark = pytest.mark.timeout(300)


#: A client with two guarded calls (retry once, then a fallback) and one unguarded call.
CLIENT = """
import requests

TIMEOUT = 0.3  # the hang fault lasts as long as this


def guarded(call, fallback):
    for _ in range(2):
        try:
            answer = call()
            answer.raise_for_status()
            return answer.json()
        except (requests.RequestException, ValueError):
            continue
    return fallback


def fetch(session, url):
    return guarded(lambda: session.get(url, timeout=TIMEOUT), {"ok": True})
"""

SHOP = """
import pytest
import requests

from client import TIMEOUT, fetch, guarded


def checkout(base):
    s = requests.Session()
    fetch(s, f"{base}/stock/42")
    guarded(lambda: s.post(f"{base}/payments", json={"amount": 5}, timeout=TIMEOUT), {})
    answer = s.get(f"{base}/recommendations/42", timeout=TIMEOUT)  # no fallback
    answer.raise_for_status()
    return answer.json()["ok"]


@pytest.mark.chaos_explore(latency="50ms")
def test_checkout(chaos_proxy):
    assert checkout(chaos_proxy.url) is True
"""

FAULTS = ["503", "429", "reset", "hang", "malformed", "latency"]
CALLS = ["GET /stock/{id}", "POST /payments", "GET /recommendations/{id}"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    new_project(pytester).makepyfile(client=CLIENT)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=240)


def test_exploration_fails_only_the_unguarded_call_its_replay_reproduces_it_and_lf_works(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_shop=SHOP)
    result = run(project, "--chaos-explore-json", "explore.json")
    # the unguarded call breaks the test under every fault but latency; nothing else does
    result.assert_outcomes(passed=1 + 6 + 6 + 1, failed=5)
    result.stdout.fnmatch_lines(
        [
            "*chaosproxy: exploration (calls x faults)*",
            "test_shop.py::test_checkout: 3 calls x 6 faults; 18 runs: 13 passed, 5 failed, "
            "0 skipped (0 repeats); 0 left out by the budget",
            "  call * 503 * 429 * reset * hang * malformed * latency",
            "  GET /stock/{id} * pass * pass * pass * pass * pass * pass",
            "  POST /payments * pass * pass * pass * pass * pass * pass",
            "  GET /recommendations/{id} * FAIL * FAIL * FAIL * FAIL * FAIL * pass",
            "  FAIL GET /recommendations/{id} x 503: requests.exceptions.HTTPError: 503 *",
            "    replay: pytest test_shop.py::test_checkout --chaos-replay *",
        ]
    )
    result.stdout.fnmatch_lines(["collected 19 items"])  # the fault-free run and 18 more
    doc = json.loads((project.path / "explore.json").read_text())
    (test,) = doc["tests"]
    assert (test["test"], test["calls"], test["faults"]) == (
        "test_shop.py::test_checkout",
        CALLS,
        FAULTS,
    )
    failed = {(r["calls"][0], r["fault"]) for r in test["runs"] if r["status"] == "failed"}
    assert failed == {("GET /recommendations/{id}", f) for f in FAULTS if f != "latency"}
    assert doc["totals"] == {
        "runs": 18, "passed": 13, "failed": 5, "skipped": 0, "repeats": 0, "over_budget": 0
    }  # fmt: skip

    # the replay line of a failure reproduces it: the same fault on the same call, alone
    reset = next(r for r in test["runs"] if r["fault"] == "reset" and r["status"] == "failed")
    assert reset["message"].startswith("requests.exceptions.ConnectionError:")
    command = shlex.split(reset["replay"])
    assert command[:2] == ["pytest", "test_shop.py::test_checkout"]
    replayed = run(project, *command[1:])
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        [
            "E * ConnectionResetError*",
            f"replay: {reset['replay']}",
            "*GET http://127.0.0.1:*/recommendations/42 -> reset in *[[]rule explore-reset[]]",
            "FAILED test_shop.py::test_checkout - requests.exceptions.ConnectionError*",
        ]
    )
    # --lf and -k select among the runs as among any parametrized test's items
    again = run(project, "--lf", "-k", "503")
    again.assert_outcomes(failed=1, deselected=4)
    again.stdout.fnmatch_lines(
        ["FAILED *test_checkout[[]explore: GET /recommendations/{id} x 503[]]*"]
    )


BUDGET = """
import pathlib

import pytest
import requests

from client import TIMEOUT, fetch


@pytest.mark.chaos_explore(faults=["503", "reset"])
def test_a(chaos_proxy):
    s = requests.Session()
    fetch(s, f"{chaos_proxy.url}/stock/1")
    fetch(s, f"{chaos_proxy.url}/price/1")


@pytest.mark.chaos_explore(faults=["503", "reset"], max=3)
def test_b(chaos_proxy):
    s = requests.Session()
    fetch(s, f"{chaos_proxy.url}/stock/7")  # the same call as test_a's: not explored again
    fetch(s, f"{chaos_proxy.url}/reviews")
    fetch(s, f"{chaos_proxy.url}/cart")


@pytest.mark.chaos_explore(faults=["503"])
def test_c(chaos_proxy):
    s = requests.Session()
    fetch(s, f"{chaos_proxy.url}/alpha")
    s.get(f"{chaos_proxy.url}/beta", timeout=TIMEOUT).raise_for_status()


@pytest.mark.chaos_explore(faults=["503"], attempts=1)
def test_first_attempts(chaos_proxy):
    s = requests.Session()
    fetch(s, f"{chaos_proxy.url}/retried")  # its retry gets through
    s.get(f"{chaos_proxy.url}/not-retried", timeout=TIMEOUT).raise_for_status()


@pytest.mark.chaos_explore
def test_broken(chaos_proxy):
    requests.get(f"{chaos_proxy.url}/x", timeout=TIMEOUT)
    assert False, "broken without any fault"


@pytest.mark.chaos_explore(faults=["503"])
def test_changing_calls(chaos_proxy):
    # the recording run calls /first; every later run calls /second instead
    flag = pathlib.Path("explore-flag")  # in the project's folder
    path = "/second" if flag.exists() else "/first"
    flag.touch()
    requests.get(f"{chaos_proxy.url}{path}", timeout=TIMEOUT)
"""


def test_budget_repeats_pairs_and_a_failing_baseline_under_xdist(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(test_budget=BUDGET)
    result = run(
        project, "-n", "2", "--chaos-explore-depth", "2", "--chaos-explore-json", "out.json", "-rs"
    )
    # items (each test's fault-free run first):
    # test_a: 4 singles + 2 pairs pass; test_b: 3 of its 12 runs (2 repeat test_a's);
    # test_c: alpha passes, beta fails, so their pair is skipped; test_first_attempts: the
    # same, only the call without a retry failing; test_broken: only its fault-free run,
    # failing; test_changing_calls: its run fails, the call it explores is not made any more
    result.assert_outcomes(passed=7 + 2 + 2 + 2 + 1, failed=1 + 1 + 1 + 1, skipped=2 + 1 + 1)
    result.stdout.fnmatch_lines_random(
        [
            "test_budget.py::test_a: 2 calls x 2 faults; 6 runs: 6 passed, 0 failed, 0 skipped "
            "(0 repeats); 0 left out by the budget",
            "  pair GET /stock/{id} + GET /price/{id} x 503: pass",
            "  pair GET /stock/{id} + GET /price/{id} x reset: pass",
            "test_budget.py::test_b: 3 calls x 2 faults; 3 runs: 1 passed, 0 failed, 2 skipped "
            "(2 repeats); 9 left out by the budget",
            "  GET /reviews * pass  -",
            "test_budget.py::test_c: 2 calls x 1 faults; 3 runs: 1 passed, 1 failed, 1 skipped "
            "(0 repeats); 0 left out by the budget",
            "  pair GET /alpha + GET /beta x 503: skip (explore: GET /beta x 503 already fails alone)",
            "  GET /retried * pass",
            "  GET /not-retried * FAIL",
            "test_budget.py::test_broken: 1 calls x 6 faults; 0 runs: *",
            "  the fault-free run failed, so nothing was explored: fix it first",
            "  FAIL GET /first x 503: Failed: explore: GET /first was not requested in this run *",
            "explored 6 tests: 16 runs, 9 passed, 3 failed, 4 skipped (2 repeat an identity already "
            "explored), 9 left out by the budget",
            "SKIPPED * explore: repeat of a run of test_budget.py::test_a",
        ]
    )
    doc = json.loads((project.path / "out.json").read_text())
    assert doc["totals"] == {
        "runs": 16, "passed": 9, "failed": 3, "skipped": 4, "repeats": 2, "over_budget": 9
    }  # fmt: skip
    b = next(t for t in doc["tests"] if t["test"].endswith("test_b"))
    assert [(r["calls"], r["fault"], r["status"]) for r in b["runs"]] == [
        (["GET /stock/{id}"], "503", "skipped"),
        (["GET /stock/{id}"], "reset", "skipped"),
        (["GET /reviews"], "503", "passed"),
    ]


def test_bad_markers_and_tokens_stop_before_any_proxy_starts(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.chaos_explore(faults=["503", "boom"])
        def test_menu(chaos_proxy):
            pass

        def test_other(chaos_proxy):
            pass
        """
    )
    result = run(project, "-p", "no:cacheprovider")
    assert result.ret == 2  # an error while collecting
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.chaos_explore on test_bad.py::test_menu: unknown fault(s) boom; the menu: 503, 429, *"
        ]
    )
    depth = run(project, "--chaos-explore-depth", "3")
    assert depth.ret == 4  # a usage error
    depth.stderr.fnmatch_lines(["*--chaos-explore-depth: 1 (single calls) or 2 (pairs)"])
    bad = run(project, "--chaos-replay", "not-a-token")
    assert bad.ret == 4  # a usage error
    bad.stderr.fnmatch_lines(["*--chaos-replay: 'not-a-token' is not a replay token*"])
    from chaosproxy.testing.explore import Call, Run

    token = Run("test_bad.py::test_gone", (Call("GET", "/a"),), ("GET /a",), "503").token()
    gone = run(project, "test_bad.py::test_other", "--chaos-replay", token)
    assert gone.ret == 4
    gone.stderr.fnmatch_lines(
        ["*the token replays test_bad.py::test_gone, which is not among the tests selected*"]
    )
