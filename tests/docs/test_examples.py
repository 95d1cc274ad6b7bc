"""The README's and the manual's examples, run as they are.

- Python files shown with their name (``# conftest.py``, ``# test_weather.py``,
  ``# chaos_script.py``) run as a new user's project: the tests with pytest in a
  subprocess, against the demo app; scripts with plain Python.
- Every scenario shown in YAML loads (a block of ``fault:`` lines: each fault loads in a
  one-rule scenario), except files a ``$ chaosproxy validate`` session shows refused.
- ``$ chaosproxy validate`` / ``$ chaosproxy explain --scenario`` sessions print what the
  page shows.
- The README's quickstart runs as written, on free ports instead of 5001 and 8080.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaosproxy import load_scenario
from chaosproxy.core.scenario import shipped
from tests.docs.examples import (
    DOCS,
    README,
    ROOT,
    Block,
    Session,
    all_blocks,
    blocks,
    named_files,
    pages,
    sessions,
)
from tests.support import free_port, require_tool

pytestmark = pytest.mark.timeout(300)

BIN = Path(sys.executable).parent
#: Commands a page's console session may show that the tests run (offline ones).
RUNNABLE = ("chaosproxy validate ", "chaosproxy explain --scenario ")


#: pages whose examples a test of their own runs (their output is not all green)
OWN_TESTS = {DOCS / "explore.md"}


def python_pages() -> list[Path]:
    return [
        p for p in pages() if p not in OWN_TESTS and any(n.endswith(".py") for n in named_files(p))
    ]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --------------------------------------------------------------------------- python files


@pytest.mark.unit
def test_the_pages_keep_their_examples() -> None:
    """The examples that were the README's run somewhere, and the README has its own test."""
    files = {page_id(p): set(named_files(p)) for p in python_pages()}
    assert {"conftest.py", "test_weather.py"} <= files["docs/testing.md"]
    assert "chaos_script.py" in files["docs/python-api.md"]
    assert "test_tour.py" in files["README.md"]


@pytest.mark.slow  # each runs a pytest session with proxies in a subprocess
@pytest.mark.parametrize("page", python_pages(), ids=page_id)
def test_python_examples_run(page: Path, pytester: pytest.Pytester) -> None:
    files = {n: text for n, text in named_files(page).items() if n.endswith(".py")}
    tests = {n: t for n, t in files.items() if n.startswith("test_")}
    scripts = {n: t for n, t in files.items() if n not in tests and n != "conftest.py"}
    if "conftest.py" in files:
        pytester.makeconftest(files["conftest.py"])
    if tests:
        for name, text in tests.items():
            pytester.makepyfile(**{name[:-3]: text})
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)
        expected = sum(len(re.findall(r"^def test_", t, re.M)) for t in tests.values())
        result.assert_outcomes(passed=expected)
        if page_id(page) == "docs/testing.md":
            result.stdout.fnmatch_lines(
                [
                    "*chaosproxy: faults injected per test*",
                    "test_weather.py::test_two_failures_are_retried_with_growing_backoff: 2 faults in 3 requests *",
                    "test_weather.py::test_breaker_opens_and_the_cache_answers: 5 faults in 6 requests *",
                    "test_weather.py::test_slow_upstream_still_answers: 1 fault in 1 request (scenario slow, seed 3)",
                ]
            )
    for name, text in scripts.items():
        script = pytester.makepyfile(**{name[:-3]: text})
        result = pytester.runpython(script)
        assert result.ret == 0, result.stderr.str()
        if name == "chaos_script.py":
            found = re.search(r"(\d+) of 30 failed; (\d+) injected", result.stdout.str())
            assert found and found.group(1) == found.group(2) != "0", result.stdout.str()
            result.stdout.fnmatch_lines(["*GET http://127.0.0.1:*/v1/forecast/berlin -> *"])


def shown_in_order(session: Session, output: str) -> str | None:
    """Why ``output`` does not hold the session's lines in order (``...`` alone: any
    lines; within a line: any text), or None when it does."""
    lines = output.split("\n")
    at = 0
    for want in session.expected:
        if want == "...":
            continue
        pattern = session.pattern(want)
        found = next((i for i in range(at, len(lines)) if pattern.fullmatch(lines[i])), None)
        if found is None:
            return f"{session.block}: $ {session.command}: no line like\n  {want}\nin\n{output}"
        at = found + 1
    return None


@pytest.mark.slow  # two pytest sessions with proxies in a subprocess
def test_the_explore_page_runs_as_shown(pytester: pytest.Pytester) -> None:
    page = DOCS / "explore.md"
    files = {n: t for n, t in named_files(page).items() if n.endswith(".py")}
    example = ROOT / "examples" / "shop"
    assert files == {p.name: p.read_text("utf-8") for p in example.glob("*.py")}
    for name, text in files.items():
        pytester.makepyfile(**{name[:-3]: text})
    shown = {s.command: s for b in blocks(page) if b.lang == "console" for s in sessions(b)}

    # the suite passes under every shipped scenario
    plain = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=240)
    plain.assert_outcomes(passed=1 + len(shipped()))
    assert shown_in_order(shown["pytest -q"], plain.stdout.str()) is None

    # exploration finds the unguarded call, as the page shows
    command = "pytest -q --chaos-explore test_shop.py::test_product_page"
    explored = pytester.runpytest_subprocess(
        *shlex.split(command)[1:], "--chaos-explore-json", "explore.json", timeout=240
    )
    explored.assert_outcomes(passed=8, failed=5)
    assert shown_in_order(shown[command], explored.stdout.str()) is None

    # the page's replay command is the report's (tests/plugin/test_explore.py replays one)
    doc = json.loads((pytester.path / "explore.json").read_text())
    replays = [r["replay"] for r in doc["tests"][0]["runs"] if r["status"] == "failed"]
    assert next(c for c in shown if "--chaos-replay" in c) == replays[0]


# --------------------------------------------------------------------------- scenarios


def refused_files() -> set[tuple[Path, str]]:
    """(page, file) pairs a validate session on that page shows as refused."""
    refused: set[tuple[Path, str]] = set()
    for block in all_blocks():
        if block.lang != "console":
            continue
        for session in sessions(block):
            words = shlex.split(session.command)
            if words[:2] == ["chaosproxy", "validate"] and session.expected:
                refused.update((block.page, w) for w in words[2:] if not w.startswith("-"))
    return refused


def is_policy(block: Block) -> bool:
    """A ``chaosproxy assess --expect`` policy file (``# policy.yaml``), not a scenario."""
    return block.lang == "yaml" and (block.name or "").startswith("policy")


def scenario_blocks() -> list[Block]:
    found = []
    refused = refused_files()
    for block in all_blocks():
        if block.lang != "yaml" or (block.page, block.name) in refused or is_policy(block):
            continue
        found.append(block)
    return found


@pytest.mark.unit
def test_policy_examples_load(tmp_path: Path) -> None:
    """Every policy file shown loads as ``--expect`` reads it (docs/assess.md has one)."""
    from chaosproxy.testing.assess import expect

    policies = [b for b in all_blocks() if is_policy(b)]
    assert any(b.page == DOCS / "assess.md" for b in policies)
    for block in policies:
        path = tmp_path / (block.name or "policy.yaml")
        path.write_text(block.text, encoding="utf-8")
        assert expect.load(path).rules, f"{block}: no expectations"


@pytest.mark.unit
@pytest.mark.parametrize("block", scenario_blocks(), ids=str)
def test_yaml_examples_load(block: Block, tmp_path: Path) -> None:
    lines = [ln for ln in block.text.split("\n") if ln.strip() and not ln.startswith("#")]
    if lines and all(ln.startswith("fault:") for ln in lines):
        # read by chaosproxy's own YAML loader, as a file would be (on: stays a string)
        texts = [f"name: example-{n}\nrules:\n  - {ln}\n" for n, ln in enumerate(lines)]
    else:
        texts = [block.text]
    for text in texts:
        path = tmp_path / "example.yaml"
        path.write_text(text, encoding="utf-8")
        scenario = load_scenario(path)
        assert scenario.rules or scenario.phases, f"{block}: no rules and no phases"


# --------------------------------------------------------------------------- console sessions


def console_sessions() -> list[Session]:
    return [
        s
        for b in all_blocks()
        if b.lang == "console"
        for s in sessions(b)
        if s.command.startswith(RUNNABLE)
    ]


@pytest.mark.parametrize("session", console_sessions(), ids=lambda s: f"{s.block}")
def test_console_sessions_print_what_the_page_shows(session: Session, tmp_path: Path) -> None:
    for name, text in named_files(session.block.page).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    words = shlex.split(session.command)
    out = subprocess.run(
        [str(BIN / "chaosproxy"), *words[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    problem = session.mismatch(out.stdout + out.stderr)
    assert problem is None, f"{session.block}: $ {session.command}\n{problem}"


@pytest.mark.unit
def test_the_manual_has_runnable_sessions() -> None:
    commands = {s.command.split()[1] for s in console_sessions()}
    assert commands == {"validate", "explain"}
    assert any(s.block.page == README for s in console_sessions())


# --------------------------------------------------------------------------- quickstart


def quickstart() -> tuple[str, str]:
    """The tour's two shell blocks: start upstream and proxy, then call it with curl."""
    shell = [b.text for b in all_blocks() if b.page == README and b.lang == "sh"]
    start = next(t for t in shell if "chaosproxy run" in t)
    calls = next(t for t in shell if "curl" in t and "seq" in t)
    return start, calls


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    require_tool("curl")
    start, calls = quickstart()
    assert "--port 5001" in start and "http://127.0.0.1:5001" in start
    assert "127.0.0.1:8080" in start and "127.0.0.1:8080" in calls
    upstream, proxy = free_port(), free_port()

    def ports(text: str) -> str:
        return text.replace("5001", str(upstream)).replace("8080", str(proxy))

    script = "\n".join(
        [
            ports(start),
            f"for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/{proxy}) 2>/dev/null && "
            f"(exec 3<>/dev/tcp/127.0.0.1/{upstream}) 2>/dev/null && break; sleep 0.1; done",
            ports(calls),
            "kill %2; wait %2; kill %1; wait",
        ]
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    began = time.monotonic()
    out = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    text = out.stdout + out.stderr
    codes = re.findall(r"^(\d{3})$", out.stdout, re.M)
    assert len(codes) == 10, text
    assert set(codes) <= {"200", "503"}, text  # the upstream answers; flaky injects 503s
    failed = codes.count("503")
    summary = re.search(r"summary: (\d+) faults? injected into (\d+) requests?", text)
    assert summary, text
    assert (int(summary.group(1)), int(summary.group(2))) == (failed, 10), text
    assert time.monotonic() - began < 60
    for port in (upstream, proxy):  # everything the quickstart started has stopped
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
