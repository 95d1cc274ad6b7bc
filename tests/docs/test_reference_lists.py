"""The manual's lists are complete: every rule key, scenario key, match key, outcome,
metric, subcommand and shipped scenario the code has is named on its page (the README's
lists had drifted: two faults and two rule keys were missing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from chaosproxy.core import scenario
from chaosproxy.core.decisions import OUTCOMES
from tests.docs.examples import DOCS, ROOT


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def keys(model: type) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]  # type: ignore[attr-defined]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("model", "where"),
    [
        (scenario.Rule, "scenarios.md"),
        (scenario.Scenario, "scenarios.md phases.md"),
        (scenario.Match, "scenarios.md"),
    ],
    ids=["rule", "scenario", "match"],
)
def test_every_key_is_documented(model: type, where: str) -> None:
    text = "\n".join(page(p) for p in where.split())
    missing = [
        k for k in keys(model) if f"`{k}`" not in text and not re.search(rf"^\s*{k}:", text, re.M)
    ]
    assert not missing, f"docs/{where} does not name {missing}"


@pytest.mark.unit
def test_the_rule_keys_sentence_lists_them_all() -> None:
    sentence = re.search(r"A rule's keys are (.*?)\.", page("scenarios.md"), re.S)
    assert sentence
    assert re.findall(r"`(\w+)`", sentence.group(1)) == keys(scenario.Rule)


@pytest.mark.unit
def test_every_outcome_is_documented() -> None:
    text = page("control-api.md")
    assert [o for o in OUTCOMES if f"`{o}`" not in text] == []


@pytest.mark.unit
def test_every_metric_is_documented() -> None:
    source = (ROOT / "chaosproxy" / "core" / "metrics.py").read_text(encoding="utf-8")
    families = re.findall(r'family\(\s*"(chaosproxy_\w+)"', source)
    assert families, "no metric family found in chaosproxy/core/metrics.py"
    text = page("control-api.md")
    assert [f for f in families if f"`{f}" not in text] == []


@pytest.mark.e2e
def test_every_subcommand_is_in_the_commands_table() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "chaosproxy"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    commands = re.findall(r"^    (\w+)\s", out.stdout, re.M)
    assert "run" in commands, out.stdout
    table = page("running.md").split("## Commands", 1)[1]
    assert [c for c in commands if f"| `chaosproxy {c}" not in table] == []


@pytest.mark.unit
def test_every_shipped_scenario_is_in_the_table() -> None:
    shipped = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
    table = page("scenarios.md").split("## Shipped scenarios", 1)[1]
    assert [s for s in shipped if f"| `{s}` |" not in table] == []


@pytest.mark.unit
def test_the_readme_counts_the_shipped_scenarios() -> None:
    shipped = list((ROOT / "scenarios").glob("*.yaml"))
    said = re.search(r"(\d+) scenarios are\s+shipped", (ROOT / "README.md").read_text("utf-8"))
    assert said is not None and int(said[1]) == len(shipped)  # it said eleven of 14


#: top-level folders of the checkout that the manual names files in
TOP = ("chaosproxy", "proxy_addons", "demo_app", "scenarios", "tests", "bench", "docs", "scripts")


@pytest.mark.unit
def test_every_file_the_manual_names_exists() -> None:
    pattern = re.compile(r"`((?:" + "|".join(TOP) + r")/[\w./-]+)`")
    named = set()
    for path in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for found in pattern.findall(path.read_text("utf-8")):
            named.add((path.relative_to(ROOT).as_posix(), found.rstrip("/")))
    assert named, "no file named"
    assert sorted((page, f) for page, f in named if not (ROOT / f).exists()) == []
