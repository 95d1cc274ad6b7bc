"""The JSON Schema and ``validate`` agree (DESIGN.md, "Decisions recorded"; issue 22 item 11).

A corpus of scenario files: every file in ``corpus/valid`` passes ``validate`` and the
schema; every file in ``corpus/invalid`` fails ``validate``, and fails the schema too,
except where JSON Schema cannot say it (``NOT_EXPRESSIBLE``, with the reason). The schema
is checked in process (``jsonschema``) and with ``check-jsonschema``, the tool editors and
CI use, installed in its own venv (in the project's it breaks mitmproxy's ruamel pin).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from chaosproxy.core import scenario as sc
from tests.support import validate_json

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
SCHEMA_FILE = ROOT / "scenarios" / "schema.json"

#: Invalid files the schema accepts, and why JSON Schema cannot refuse them.
NOT_EXPRESSIBLE = {
    "delay-over-10-minutes": "the limit applies to the duration's parsed value (11m is text "
    "with a unit) and is lifted by a sibling allow_long",
    "connect-delay-with-error": "the faults' capabilities (acts at the connect stage) are "
    "declared in Python, per fault type, not in the schema",
    "connect-refused-match-path": "which match conditions a rule may use depends on its "
    "faults' stage, declared in Python per fault type, not in the schema",
    "duplicate-rule-name": "uniqueness of one property across array items (uniqueItems "
    "compares whole items, and unnamed rules get their default names only when loaded)",
    "jitter-above-delay": "compares the parsed values of two fields, each text with a unit",
    "latency-quantiles-not-increasing": "compares the parsed values of two quantiles, each "
    "text with a unit",
    "match-json-unicode-index": "telling a Unicode digit ('²') from a key needs Unicode "
    "property classes, which JSON Schema's regular expressions do not guarantee",
    "phase-missing-duration": "depends on the item's position (all but the last phase), which "
    "JSON Schema cannot refer to in an array of any length",
    "regex-lookahead": "whether a pattern is RE2 syntax is not a property of its text a JSON "
    "Schema regular expression can check",
    "throttle-with-malformed": "the faults' capabilities (streams the body / acts on the whole "
    "answer) are declared in Python, per fault type, not in the schema",
    "stream-cut-with-throttle": "at most one fault that streams the body per rule: that "
    "capability is declared in Python, per fault type, not in the schema",
    "ttl-zero-string": "a duration written as text ('0s') is zero only once its unit is "
    "parsed; a number is checked (exclusiveMinimum 0)",
}


def _read(path: Path) -> object:
    """The file as an editor's YAML 1.2 reader sees it (``on`` stays a string)."""
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def _schema_refuses(path: Path) -> bool:
    try:
        data = _read(path)
    except Exception:  # noqa: BLE001 - unreadable YAML (a duplicate key, a python tag)
        return True
    try:
        validate_json(data, json.loads(SCHEMA_FILE.read_text()))
    except jsonschema.ValidationError:
        return True
    return False


def test_the_corpus_covers_enough() -> None:
    assert len(VALID) >= 25 and len(INVALID) >= 35
    assert set(NOT_EXPRESSIBLE) <= {p.stem for p in INVALID}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_files_pass_validate_and_the_schema(path: Path) -> None:
    sc.load_file(path)
    validate_json(_read(path), json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_files_fail_validate_and_the_schema_where_it_can_say_so(path: Path) -> None:
    with pytest.raises(sc.ScenarioError) as err:
        sc.load_file(path)
    assert all(line.startswith(str(path)) for line in err.value.lines)
    if path.stem in NOT_EXPRESSIBLE:
        assert not _schema_refuses(path), f"{path.stem}: the schema refuses it now: unlist it"
    else:
        assert _schema_refuses(path), f"{path.stem}: validate refuses it, the schema accepts it"


# --------------------------------------------------------------------------- check-jsonschema

TOOLS = ROOT / ".venv-tools" / "check-jsonschema"


def _check_jsonschema() -> Path:
    """check-jsonschema in its own cached venv; skip (CI: fail) when it cannot be installed."""
    exe = TOOLS / "bin" / "check-jsonschema"
    if not exe.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True, timeout=120)
            subprocess.run(
                [str(TOOLS / "bin" / "pip"), "install", "-q", "check-jsonschema"],
                check=True,
                timeout=600,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            message = f"check-jsonschema could not be installed in {TOOLS}: {exc}"
            if os.environ.get("CHAOSPROXY_REQUIRE_TOOLS"):
                pytest.fail(message)
            pytest.skip(message)
    return exe


def _failed_files(exe: Path, files: list[Path]) -> set[str]:
    run = subprocess.run(
        [str(exe), "--schemafile", str(SCHEMA_FILE), "-o", "JSON", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(run.stdout)
    failed = {e["filename"] for e in report.get("errors", [])}
    failed |= {e["filename"] for e in report.get("parse_errors", [])}
    return {Path(f).stem for f in failed}


#: Files check-jsonschema cannot even read: its YAML reader (ruamel) recurses per level and
#: dies with a RecursionError, or converts the 5000 digits and hits Python's limit; run
#: alone, it still exits non-zero, which is all we ask.
BREAKS_THE_TOOL = {"nested-500", "seed-5000-digits"}


@pytest.mark.e2e
def test_check_jsonschema_agrees_with_validate_on_the_corpus() -> None:
    exe = _check_jsonschema()
    assert _failed_files(exe, VALID) == set()
    readable = [p for p in INVALID if p.stem not in BREAKS_THE_TOOL]
    expected = {p.stem for p in readable} - set(NOT_EXPRESSIBLE)
    assert _failed_files(exe, readable) == expected
    for path in INVALID:
        if path.stem in BREAKS_THE_TOOL:
            run = subprocess.run(
                [str(exe), "--schemafile", str(SCHEMA_FILE), str(path)],
                capture_output=True,
                timeout=120,
            )
            assert run.returncode != 0
