"""The pytest plugin, run the way users run it: pytest in a subprocess (pytester) on a
test file using the chaos_proxy fixture, the chaos marker and the options."""

from __future__ import annotations

import re

import pytest

from tests.plugin.projects import new_project

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    return new_project(pytester)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=240)


def test_marker_fixture_and_reset_between_tests(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        import requests

        URLS = []

        @pytest.mark.chaos("flaky", seed=3)
        def test_flaky(chaos_proxy):
            URLS.append(chaos_proxy.url)
            codes = [requests.get(f"{chaos_proxy.url}/v1/forecast/{i}").status_code for i in range(30)]
            assert chaos_proxy.scenario == "flaky" and chaos_proxy.seed == 3
            assert codes.count(503) == chaos_proxy.stats["injected"] > 0
            assert len(chaos_proxy.decisions) == 30
            calls = chaos_proxy.calls
            assert len(calls.injected) == codes.count(503)
            assert [c.status for c in calls] == codes
            assert all(c.rule == "unavailable" for c in calls.injected)

        def test_next_test_starts_from_passthrough(chaos_proxy):
            URLS.append(chaos_proxy.url)
            assert chaos_proxy.scenario == "passthrough"
            assert chaos_proxy.stats["requests"] == 0 and chaos_proxy.decisions == []
            assert requests.get(f"{chaos_proxy.url}/x").status_code == 200
            assert URLS[0] == URLS[1]  # one proxy for the session

        @pytest.mark.chaos("outage")
        def test_marker_without_asking_for_the_fixture():
            pass
        """
    )
    result = run(project)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*chaosproxy: faults injected per test*",
            "*test_flaky: * faults in 30 requests (scenario flaky, seed 3)",
            "*test_next_test_starts_from_passthrough: 0 faults in 1 request (scenario passthrough, seed *)",
            "*test_marker_without_asking_for_the_fixture: 0 faults in 0 requests (scenario outage, seed *)",
            "total: * faults injected in 3 tests",
        ]
    )


def test_the_summary_counts_in_words_that_agree(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        import requests

        @pytest.mark.chaos({"rules": [{"fault": {"type": "error", "status": 503}}]})
        def test_one(chaos_proxy):
            assert requests.get(f"{chaos_proxy.url}/x").status_code == 503
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_one: 1 fault in 1 request (scenario inline, seed *)",
            "total: 1 fault injected in 1 test",
        ]
    )


def test_the_summary_covers_every_test_under_xdist(project: pytest.Pytester) -> None:
    """With pytest-xdist each worker has its own proxy; the controller prints every test."""
    pytest.importorskip("xdist")
    project.makepyfile(
        """
        import pytest
        import requests

        @pytest.mark.parametrize("n", range(4))
        @pytest.mark.chaos({"rules": [{"fault": {"type": "error", "status": 503}}]}, seed=2)
        def test_fails_every_call(chaos_proxy, n):
            for _ in range(n + 1):
                assert requests.get(f"{chaos_proxy.url}/x").status_code == 503
        """
    )
    result = run(project, "-n", "2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*chaosproxy: faults injected per test*",
            "*test_fails_every_call[[]0[]]: 1 fault in 1 request (scenario inline, seed 2)",
            "*test_fails_every_call[[]1[]]: 2 faults in 2 requests (scenario inline, seed 2)",
            "*test_fails_every_call[[]2[]]: 3 faults in 3 requests (scenario inline, seed 2)",
            "*test_fails_every_call[[]3[]]: 4 faults in 4 requests (scenario inline, seed 2)",
            "total: 10 faults injected in 4 tests",
        ]
    )


def test_apply_accepts_a_name_a_path_a_dict_yaml_text_and_a_scenarios_dir(
    project: pytest.Pytester,
) -> None:
    project.mkdir("chaos")
    project.path.joinpath("chaos", "teapot.yaml").write_text(
        "rules:\n  - {name: teapot, fault: {type: error, status: 418}}\n"
    )
    project.makepyfile(
        """
        import pytest
        import requests

        def status(proxy):
            return requests.get(f"{proxy.url}/x").status_code

        def test_apply(chaos_proxy):
            chaos_proxy.apply("outage")
            assert chaos_proxy.scenario == "outage"
            chaos_proxy.apply("teapot")                  # found in --chaos-scenarios
            assert status(chaos_proxy) == 418
            chaos_proxy.apply("chaos/teapot.yaml")        # a path
            assert status(chaos_proxy) == 418
            chaos_proxy.apply({"rules": [{"fault": {"type": "error", "status": 502}}]})
            assert status(chaos_proxy) == 502
            chaos_proxy.apply("rules:\\n  - fault: {type: error, status: 504}\\n")
            assert status(chaos_proxy) == 504
            chaos_proxy.pause()
            assert status(chaos_proxy) == 200
            chaos_proxy.resume()

        def test_bad_scenario_fails_with_the_located_problem(chaos_proxy):
            chaos_proxy.apply("rules:\\n  - fault: {type: error, status: 999}\\n")

        @pytest.mark.chaos("flakey")
        def test_unknown_name(chaos_proxy):
            pass

        @pytest.mark.chaos("flaky", sed=3)
        def test_bad_marker(chaos_proxy):
            pass
        """
    )
    result = run(project, "--chaos-scenarios", "chaos")
    result.assert_outcomes(passed=1, failed=1, errors=2)
    result.stdout.fnmatch_lines(
        ["*no scenario file or shipped scenario named 'flakey' (did you mean 'flaky'?)*"]
    )
    result.stdout.fnmatch_lines(["*@pytest.mark.chaos: unknown argument(s) sed; valid: seed"])
    result.stdout.fnmatch_lines(
        [
            "*cannot apply chaos scenario:",
            "<text>:2:34: rules[0].fault.status: must be an HTTP status between 200 and 599, got 999",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_scenarios_dir_and_seed_from_the_ini_file(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.mkdir("chaos")
    project.path.joinpath("chaos", "half.yaml").write_text(
        "rules:\n  - {name: half, probability: 0.5, fault: {type: error, status: 503}}\n"
    )
    project.makeini("[pytest]\nchaos_scenarios = chaos\nchaos_seed = 41\n")
    project.makepyfile(
        """
        import pytest

        @pytest.mark.chaos("half")
        def test_ini(chaos_proxy):
            assert chaos_proxy.seed == 41

        @pytest.mark.chaos("half", seed=5)
        def test_marker_seed_wins(chaos_proxy):
            assert chaos_proxy.seed == 5
        """
    )
    run(project).assert_outcomes(passed=2)
    # the command line beats the environment, which beats the ini file
    project.makepyfile(
        test_order="""
        def test_seed(chaos_proxy):
            chaos_proxy.apply("half")
            import os
            assert chaos_proxy.seed == int(os.environ["EXPECTED"])
        """
    )
    monkeypatch.setenv("CHAOSPROXY_SEED", "17")
    monkeypatch.setenv("EXPECTED", "17")
    run(project, "test_order.py").assert_outcomes(passed=1)
    monkeypatch.setenv("EXPECTED", "99")
    run(project, "test_order.py", "--chaos-seed", "99").assert_outcomes(passed=1)


def test_bad_seed_names_where_it_came_from(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile("def test_x(): pass")
    monkeypatch.setenv("CHAOSPROXY_SEED", "lucky")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CHAOSPROXY_SEED: 'lucky' is not a whole number (a seed)*"])


def test_upstream_timeout_from_the_ini_file_and_the_command_line(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeini("[pytest]\nchaos_upstream_timeout = read=7s\n")
    project.makepyfile(
        """
        import os

        def test_timeouts(chaos_proxy):
            t = chaos_proxy.proxy.addon.deadlines.timeouts
            assert (t.connect, t.read) == tuple(float(x) for x in os.environ["EXPECTED"].split())
        """
    )
    monkeypatch.setenv("EXPECTED", "10 7")
    run(project).assert_outcomes(passed=1)
    monkeypatch.setenv("EXPECTED", "2 2")
    run(project, "--chaos-upstream-timeout", "2s").assert_outcomes(passed=1)
    result = run(project, "--chaos-upstream-timeout", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--chaos-upstream-timeout: 'soon' is not a duration*"])


def test_missing_upstream_fixture_says_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(chaos_proxy): pass")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named chaos_proxy_upstream*"])


def test_failure_report_shows_scenario_seed_and_decisions_and_the_seed_replays(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        """
        import requests

        def test_unlucky(chaos_proxy):
            chaos_proxy.apply({"name": "coin", "rules": [{"name": "coin", "probability": 0.5,
                              "fault": {"type": "error", "status": 503}}]})
            codes = [requests.get(f"{chaos_proxy.url}/item/{i}").status_code for i in range(12)]
            assert 503 not in codes
        """
    )
    first = run(project)
    first.assert_outcomes(failed=1)
    out = first.stdout.str()
    assert "- chaosproxy -" in out
    seed = int(re.search(r"scenario: coin \(seed (\d+)\)", out).group(1))
    assert f"replay: --chaos-seed {seed} (or CHAOSPROXY_SEED={seed})" in out
    assert re.search(r"rule coin \[error 503\]: matched 12, injected \d+", out)

    def timeline(text: str) -> list[str]:
        return re.findall(r"GET http://\S+(/item/\d+) -> (\d+) in \S+ \[([^\]]+)\]", text)

    seen = timeline(out)
    assert len(seen) == 12 and any(s[1] == "503" for s in seen)
    again = run(project, "--chaos-seed", str(seed))
    again.assert_outcomes(failed=1)
    assert timeline(again.stdout.str()) == seen


def test_jump_to_phases(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import requests

        STORM = {"name": "storm", "phases": [
            {"name": "calm", "duration": "1h"},
            {"name": "down", "rules": [{"fault": {"type": "error", "status": 503}}]},
        ]}

        def test_jump(chaos_proxy):
            chaos_proxy.apply(STORM)
            assert chaos_proxy.phase == "calm"
            assert requests.get(f"{chaos_proxy.url}/x").status_code == 200
            chaos_proxy.jump_to("down")
            assert requests.get(f"{chaos_proxy.url}/x").status_code == 503
            assert [c.status for c in chaos_proxy.calls] == [200, 503]
        """
    )
    run(project).assert_outcomes(passed=1)
