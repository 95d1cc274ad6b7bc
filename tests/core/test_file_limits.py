"""Scenario files are checked before they are read: size, kind (issue 22 item 4), counts."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import pytest

from chaosproxy.core import scenario as sc
from chaosproxy.core import yamlsource
from chaosproxy.core.yamlsource import MAX_BYTES, MAX_PHASES, MAX_RULES

RULE = "  - fault: {type: error}\n"


def refused(path: str | Path) -> list[str]:
    with pytest.raises(sc.ScenarioError) as info:
        sc.load_file(path)
    return info.value.lines


def test_a_file_over_the_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:  # sparse: 50 MB that cost no disk and are never read
        f.truncate(50_000_000)
    assert refused(big) == [
        f"{big}: file: too large: 50,000,000 bytes; a scenario is at most 1,000,000 bytes"
    ]


def test_the_limit_itself_is_accepted(tmp_path: Path) -> None:
    text = "rules:\n" + RULE
    path = tmp_path / "edge.yaml"
    path.write_text(text + "#" * (MAX_BYTES - len(text) - 1) + "\n")
    assert os.path.getsize(path) == MAX_BYTES
    assert len(sc.load_file(path).rules) == 1
    with open(path, "ab") as f:
        f.write(b"\n")
    assert "too large: 1,000,001 bytes" in refused(path)[0]


def test_read_text_stops_at_limit_plus_one_byte_whatever_stat_said() -> None:
    # /proc files say size 0 and hold more: the read itself stops past the limit
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(yamlsource.FileRefused, match="too large: more than that; .* at most 10 "):
        yamlsource.read_text("/proc/self/maps", limit=10)


def test_a_fifo_is_refused_at_once_never_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "scenario.yaml"
    os.mkfifo(fifo)
    result: list[list[str]] = []
    reader = threading.Thread(target=lambda: result.append(refused(fifo)), daemon=True)
    reader.start()
    reader.join(5)  # a blocking open would wait for a writer for ever
    assert result == [[f"{fifo}: file: not a regular file (a FIFO): give a scenario file"]]


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("/tmp", "a directory")]
)
def test_devices_and_directories_are_refused(path: str, kind: str) -> None:
    assert refused(path) == [f"{path}: file: not a regular file ({kind}): give a scenario file"]


def test_not_utf8_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "latin.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    assert refused(bad) == [
        f"{bad}: file: cannot read it: not UTF-8 text (invalid continuation byte at byte 9)"
    ]
    assert refused(tmp_path / "none.yaml") == [f"{tmp_path / 'none.yaml'}: file: no such file"]


def test_rule_count_is_capped_with_a_located_error() -> None:
    assert len(sc.load_text("rules:\n" + RULE * MAX_RULES).rules) == MAX_RULES
    with pytest.raises(sc.ScenarioError) as info:
        sc.load_text("rules:\n" + RULE * (MAX_RULES + 1), "body")
    assert info.value.lines == [
        f"body:{MAX_RULES + 2}:5: rules[{MAX_RULES}]: too many rules: a scenario has at most "
        f"{MAX_RULES} (all phases together)"
    ]


def test_rules_of_all_phases_count_together() -> None:
    half = MAX_RULES // 2
    phase = (
        "  - name: {name}\n    duration: 1s\n    rules:\n"
        + "      - fault: {{type: error}}\n" * half
    )
    text = "phases:\n" + phase.format(name="a") + phase.format(name="b") + phase.format(name="c")
    with pytest.raises(sc.ScenarioError) as info:
        sc.load_text(text, "body")
    (line,) = info.value.lines
    assert line.startswith("body:") and ": phases[2].rules[0]: too many rules" in line


def test_phase_count_is_capped() -> None:
    phases = "".join(f"  - name: p{i}\n    duration: 1s\n" for i in range(MAX_PHASES + 1))
    assert len(sc.load_text("phases:\n" + phases.split("  - name: p100")[0]).phases) == MAX_PHASES
    with pytest.raises(sc.ScenarioError) as info:
        sc.load_text("phases:\n" + phases, "body")
    assert info.value.lines == ["body:2:3: phases: 101 phases; a scenario has at most 100"]


def test_scenario_errors_cross_process_boundaries() -> None:
    with pytest.raises(sc.ScenarioError) as info:
        sc.load_text("rules: [{fault: {type: explode}}]", "body")
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.lines == info.value.lines and copy.source == "body"
