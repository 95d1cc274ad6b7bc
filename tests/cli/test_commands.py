"""The subcommands called in process through ``main(argv)``: what they print, their exit
codes, the control API answered by ``responses`` (test_cli.py runs the installed command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import responses

from chaosproxy.cli import main as cli_main
from chaosproxy.cli import run as run_command
from chaosproxy.core import scenario as sc

ADMIN = "http://admin.test:8475"


def chaosproxy(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``chaosproxy ARGV``."""
    try:
        code = cli_main.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_subcommand_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = chaosproxy(capsys, "--help")
    assert code == 0
    listed = out[out.index("COMMAND") :]
    positions = [listed.index(f"\n    {name} ") for name in
                 ("run", "validate", "explain", "list", "stats", "demo", "schema", "assess")]  # fmt: skip
    assert positions == sorted(positions)
    assert [m.__name__.rsplit(".", 1)[1] for m in cli_main.COMMANDS] == [
        "run", "validate", "explain", "list", "stats", "demo", "schema", "assess",
    ]  # fmt: skip


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = chaosproxy(capsys)
    assert code == 2 and out.startswith("usage: chaosproxy")


BAD_ARGUMENTS = [
    (["run", "--listen", "nope"], "argument --listen: 'nope' is not HOST:PORT"),
    (["run", "--listen", "127.0.0.1:70000"], "is not HOST:PORT"),
    (["run", "--upstream", "http://x", "--workers", "0"], "'0' is not a number of workers"),
    (["run", "--upstream", "http://x", "--workers", "65"], "from 1 to 64"),
    (["explain", "GET", "http://x/", "-H", "no colon"], "'no colon' is not 'Name: value'"),
    (["explain", "GET", "http://x/", "-H", ": v"], "is not 'Name: value'"),
    (["demo", "--port", "65536"], "'65536' is not a port number (0 for any free port)"),
    (["demo", "--proxy-port", "x"], "argument --proxy-port: 'x' is not a port number"),
    (["run", "--upstream", "http://x", "--state", "http://r"], "give memory or redis://HOST:PORT/DB"),
    (["run", "--upstream", "http://x", "--state", "redis://r/0?timeout=9s"], "at most 5s"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["validate"], "the following arguments are required: PATH"),
]


def test_a_bad_state_in_the_environment_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAOSPROXY_STATE", "redis://cache:6379/db0")
    code, _, err = chaosproxy(capsys, "run", "--upstream", "http://127.0.0.1:1")
    assert code == 2
    assert "chaosproxy: CHAOSPROXY_STATE: 'redis://cache:6379/db0': the database is a number" in err


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_with_usage_and_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = chaosproxy(capsys, *argv)
    assert code == 2
    assert err.startswith("usage: chaosproxy")
    assert "chaosproxy: " in err and message in err


RUN_REFUSALS = [
    (["run"], 2, "give --upstream URL (reverse proxy) or --forward"),
    (["run", "--upstream", "ftp://x"], 2, "--upstream: "),
    (
        ["run", "--upstream", "http://a", "--upstream", "http://b"],
        2,
        "give others as NAME=URL@PORT",
    ),
    (["run", "--forward", "--upstream", "http://a"], 2, "give others as NAME=URL@PORT"),
    (["run", "--upstream", "http://a", "--watch"], 2, "--watch needs --scenario PATH"),
    (["run", "--upstream", "http://a", "--admin", "0.0.0.0:9"], 2, "--admin: "),
    (["run", "--upstream", "http://a", "--scenario", "no-such-scenario"], 1, "no-such-scenario"),
]


@pytest.mark.parametrize(("argv", "code", "message"), RUN_REFUSALS)
def test_run_refuses_before_starting_anything(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    got, _, err = chaosproxy(capsys, *argv)
    assert (got, message in err) == (code, True), err
    assert "Traceback" not in err


def test_validate_prints_ok_per_file_and_located_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n  - fault: {type: error}\n  - fault: {type: latency, delay: 1s}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - fault: {type: error, status: 99}\n")
    code, out, _ = chaosproxy(capsys, "validate", str(good), "storm", str(bad))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{good}: ok (good: 2 rules)"
    assert lines[1].endswith("storm.yaml: ok (storm: 4 phases, 3 rules)")
    assert lines[2].startswith(f"{bad}:2:34: rules[0].fault.status: must be an HTTP status")
    code, out, _ = chaosproxy(capsys, "validate", str(good))
    assert code == 0


def test_list_names_descriptions_phases_and_invalid_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a-phased.yaml").write_text(
        "description: Two\n  lines.\nphases:\n  - {name: calm, duration: 1s, rules: []}\n"
        "  - {name: storm, rules: []}\n"
    )
    (tmp_path / "b.yaml").write_text("rules: []\n")
    (tmp_path / "c-broken.yaml").write_text("rules: [{fault: {type: nope}}]\n")
    code, out, _ = chaosproxy(capsys, "list", str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    assert lines[:2] == ["a-phased  Two lines. [phases: calm, storm]", "b         (no description)"]
    assert lines[2].startswith("c-broken  (invalid: ") and "unknown fault type 'nope'" in lines[2]
    assert len(lines) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert chaosproxy(capsys, "list", str(empty))[:2] == (0, f"no scenarios in {empty}\n")
    code, _, err = chaosproxy(capsys, "list", str(tmp_path / "missing"))
    assert (code, err) == (1, f"chaosproxy: {tmp_path / 'missing'}: not a directory\n")


def test_schema_prints_the_models_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = chaosproxy(capsys, "schema")
    assert code == 0 and json.loads(out) == sc.json_schema()


def test_explain_against_a_scenario_with_a_seed_and_a_phase(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = chaosproxy(
        capsys, "explain", "--scenario", "flaky", "--seed", "3", "GET", "http://api/x"
    )
    assert code == 0
    first, *verdicts = out.splitlines()
    assert first.startswith("GET http://api/x against flaky (") and first.endswith(", seed 3):")
    assert verdicts and all(v.startswith(("  FIRES ", "    -   ", "  => ")) for v in verdicts)
    code, _, err = chaosproxy(
        capsys, "explain", "--scenario", "storm", "--phase", "nope", "GET", "http://api/x"
    )
    assert code == 2 and "nope" in err
    code, _, err = chaosproxy(capsys, "explain", "--phase", "calm", "GET", "http://api/x")
    assert code == 2 and "--phase and --seed go with --scenario" in err


def test_explain_says_what_an_x_chaos_fault_header_asks_for(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "aid.yaml"
    path.write_text("request_faults: true\nrules: [{fault: {type: error, status: 500}}]\n")
    args = ("explain", "--scenario", str(path), "GET", "http://api/x", "-H")
    code, out, _ = chaosproxy(capsys, *args, "X-Chaos-Fault: latency=1s; error=503")
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == (
        "  ASKED X-Chaos-Fault [latency 1s + error 503]: given instead of the rules, to a "
        "loopback client or one with X-Chaos-Token (request_faults: true)"
    )
    assert lines[2] == "  the rules, for a client that may not ask:"
    code, out, _ = chaosproxy(capsys, *args, "X-Chaos-Fault: error=9")
    assert out.splitlines()[1] == (
        "  X-Chaos-Fault ignored, the rules decide: part 1 ('error=9'): must be an HTTP "
        "status between 200 and 599"
    )
    code, out, _ = chaosproxy(capsys, "explain", "--scenario", "flaky", "GET", "http://api/x",
                              "-H", "X-Chaos-Fault: error=503")  # fmt: skip
    assert "X-Chaos-Fault" not in out  # without request_faults the header means nothing


STATS = {
    "scenario": "flaky", "seed": 3, "phase": None, "paused": False, "requests": 7,
    "injected": 2,
    "rules": [
        {"name": "unavailable", "phase": None, "fault": "error 503", "seen": 7, "injected": 2},
        {"name": "never", "phase": None, "fault": "latency 1s", "seen": 0, "injected": 0},
    ],
}  # fmt: skip
DECISIONS = [
    {"time": 0.0, "method": "GET", "url": "http://api/x", "rule": "unavailable",
     "fault": "error 503", "outcome": "injected", "status": 503},
    {"time": 0.0, "method": "GET", "url": "http://api/y", "rule": None, "fault": None,
     "outcome": "passed", "status": None},
]  # fmt: skip


@responses.activate
def test_stats_asks_the_control_api_with_the_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAOSPROXY_ADMIN_TOKEN", "tok")
    auth = responses.matchers.header_matcher({"Authorization": "Bearer tok"})
    responses.get(f"{ADMIN}/stats", json=STATS, match=[auth])
    responses.get(f"{ADMIN}/decisions?limit=2", json=DECISIONS, match=[auth])
    code, out, _ = chaosproxy(capsys, "stats", "--admin", "admin.test:8475", "--decisions", "2")
    assert code == 0
    assert "flaky, seed 3, injecting: 2 faults injected into 7 requests" in out
    assert "0 (never matched)" in out and "last 2 requests" in out
    assert "GET http://api/x" in out and "injected 503" in out
    code, out, _ = chaosproxy(capsys, "stats", "--admin", ADMIN, "--json", "--decisions", "2")
    assert json.loads(out) == {"stats": STATS, "decisions": DECISIONS}


@responses.activate
def test_stats_cluster_adds_the_replicas_up(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = dict(STATS, scope="cluster", replicas=3, members=[])
    responses.get(f"{ADMIN}/stats?scope=cluster", json=cluster)
    code, out, _ = chaosproxy(capsys, "stats", "--admin", ADMIN, "--cluster", "--decisions", "0")
    assert code == 0
    assert "2 faults injected into 7 requests by 3 replicas" in out


@responses.activate
def test_stats_says_when_the_control_api_refuses_or_is_not_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    responses.get(f"{ADMIN}/stats", json={"error": "a token is required"}, status=401)
    code, _, err = chaosproxy(capsys, "stats", "--admin", ADMIN, "--decisions", "0")
    assert code == 1
    assert err == f"chaosproxy: {ADMIN}/stats answered 401: a token is required\n"
    code, _, err = chaosproxy(capsys, "stats", "--admin", "http://elsewhere.test:1")
    assert code == 1
    assert "cannot reach the control API at http://elsewhere.test:1 (nothing answers there)" in err


@responses.activate
def test_explain_without_a_scenario_asks_the_running_proxy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = {
        "scenario": "flaky", "source": "flaky.yaml", "phase": None, "seed": 9,
        "verdicts": [{"rule": "unavailable", "fault": "error 503", "fires": True,
                      "reason": "matches: fires"}],
    }  # fmt: skip
    sent = {"method": "POST", "url": "http://api/x", "headers": [["X-A", "1"]], "body": "b",
            "upstream": None}  # fmt: skip
    responses.post(
        f"{ADMIN}/explain", json=answer, match=[responses.matchers.json_params_matcher(sent)]
    )
    code, out, _ = chaosproxy(
        capsys, "explain", "--admin", ADMIN, "POST", "http://api/x", "-H", "X-A: 1", "-d", "b"
    )
    assert code == 0
    assert out.splitlines() == [
        "POST http://api/x against flaky (running proxy, flaky.yaml, seed 9):",
        "  FIRES unavailable [error 503]: matches: fires",
    ]


def test_demo_with_a_bad_scenario_starts_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = chaosproxy(capsys, "demo", "--no-browser", "--scenario", "no-such-scenario")
    assert code == 1 and "no-such-scenario" in err


def test_an_unexpected_error_is_one_line_unless_debugging(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(args: object) -> int:
        raise LookupError("boom")

    monkeypatch.setattr(run_command, "command", explode)
    monkeypatch.delenv("CHAOSPROXY_DEBUG", raising=False)
    code, _, err = chaosproxy(capsys, "run", "--forward")
    assert code == 1
    assert err.startswith("chaosproxy: unexpected error: LookupError: boom\n")
    assert "CHAOSPROXY_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("CHAOSPROXY_DEBUG", "1")
    with pytest.raises(LookupError):
        cli_main.main(["run", "--forward"])


@pytest.mark.parametrize(("error", "code"), [(KeyboardInterrupt, 130), (BrokenPipeError, 0)])
def test_ctrl_c_and_a_closed_pipe_exit_quietly(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: type[BaseException],
    code: int,
) -> None:
    def stop(args: object) -> int:
        raise error

    monkeypatch.setattr(run_command, "command", stop)
    assert chaosproxy(capsys, "run", "--forward") == (code, "", "")


@pytest.mark.e2e
def test_the_command_line_imports_mitmproxy_flask_and_rich_only_for_the_commands_using_them() -> (
    None
):
    """``chaosproxy validate`` and friends start without the proxy's weight (--version
    reads mitmproxy.version, a few milliseconds)."""
    code = (
        "import sys; from chaosproxy.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'mitmproxy', 'flask', "
        "'rich'} and m not in {'mitmproxy', 'mitmproxy.version'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr
