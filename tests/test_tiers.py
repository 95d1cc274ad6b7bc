"""The test tiers of tests/conftest.py, run on a small project laid out like ours: every
test gets one tier, a unit test that leaves the process fails, ``-m unit`` imports only
what can hold a unit test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INI = """[pytest]
addopts = -p no:cacheprovider --strict-markers
markers =
    unit: u
    wire: w
    e2e: e
    slow: s
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project whose tests/ has our conftest.py and support.py."""
    tests = pytester.path / "tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("")
    for name in ("conftest.py", "support.py"):
        shutil.copy(HERE / name, tests / name)
    pytester.makeini(INI)
    return pytester


def write(project: pytest.Pytester, relative: str, text: str) -> None:
    path = project.path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(project.path).parents:
        if parent.parts:
            (project.path / parent / "__init__.py").touch()
    path.write_text(text)


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-p", "no:randomly", *args, timeout=120)


def test_a_unit_test_that_opens_a_socket_or_starts_a_process_fails_saying_so(
    project: pytest.Pytester,
) -> None:
    write(
        project,
        "tests/core/test_a.py",
        """
import socket, subprocess, sys
import pytest

def test_pure():
    assert sorted([2, 1]) == [1, 2]

def test_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()

def test_picks_a_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

def test_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_a_unix_socket_pair_is_in_process():
    a, b = socket.socketpair()
    a.close(); b.close()

@pytest.mark.wire
def test_marked_wire_may_connect():
    with socket.socket() as s:
        s.connect_ex(("127.0.0.1", 9))
""",
    )
    result = run(project)
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_listens _*",
            "marked unit, but it listens on a network socket (*): mark it wire or e2e (see*",
            "*_ test_starts_a_process _*",
            "marked unit, but it starts a subprocess (*python*): mark it wire or e2e*",
        ]
    )


def test_a_test_without_a_tier_or_with_two_stops_the_collection(project: pytest.Pytester) -> None:
    write(project, "tests/elsewhere/test_b.py", "def test_nowhere():\n    pass\n")
    write(
        project,
        "tests/core/test_c.py",
        "import pytest\n\n@pytest.mark.wire\n@pytest.mark.e2e\ndef test_both():\n    pass\n",
    )
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*test tiers:*",
            "*tests/core/test_c.py::test_both: more than one tier (e2e, wire)*",
            "*tests/elsewhere/test_b.py::test_nowhere: no tier: mark it unit, wire or e2e*",
        ]
    )


def test_each_tier_and_slow_select_their_tests_and_dash_m_unit_skips_files_without_one(
    project: pytest.Pytester,
) -> None:
    write(project, "tests/core/test_u.py", "def test_u():\n    pass\n")
    write(
        project,
        "tests/integration/test_w.py",
        "import pytest\n\ndef test_w():\n    pass\n\n"
        "@pytest.mark.unit\ndef test_u_among_wire():\n    pass\n",
    )
    # never imported by `-m unit`: no unit test can be in it
    write(project, "tests/integration/test_boom.py", "raise RuntimeError('imported')\n")
    result = run(project, "--collect-only", "-q", "-m", "unit")
    assert result.ret == 0, result.stdout.str()
    assert sorted(line for line in result.stdout.lines if "::" in line) == [
        "tests/core/test_u.py::test_u",
        "tests/integration/test_w.py::test_u_among_wire",
    ]
    write(project, "tests/integration/test_boom.py", "def test_boom():\n    pass\n")
    write(project, "tests/plugin/test_p.py", "def test_p():\n    pass\n")
    result = run(project, "--collect-only", "-q", "-m", "wire")
    assert sorted(line for line in result.stdout.lines if "::" in line) == [
        "tests/integration/test_boom.py::test_boom",
        "tests/integration/test_w.py::test_w",
    ]
    result = run(project, "--collect-only", "-q", "-m", "slow")  # tests/plugin is slow
    assert [line for line in result.stdout.lines if "::" in line] == [
        "tests/plugin/test_p.py::test_p"
    ]
