"""The layers hold: import-linter's contracts in pyproject.toml ([tool.importlinter]) pass,
and the graph they are checked on has every module, the symlinked folders included."""

from __future__ import annotations

import warnings
from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application import use_cases

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold(capsys: pytest.CaptureFixture[str]) -> None:
    configuration.configure()  # what `lint-imports` does first
    passed = use_cases.lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True
    )
    report = capsys.readouterr().out
    for line in report.splitlines():
        if line.startswith("No matches for ignored import"):  # fixed: delete the ignore
            warnings.warn(f"pyproject.toml [tool.importlinter]: {line}", stacklevel=1)
    assert passed == use_cases.SUCCESS, f"lint-imports failed:\n{report}"


@pytest.mark.parametrize("folder", ["proxy_addons", "demo_app", "chaosproxy"])
def test_the_graph_has_every_module_of_the_package_and_its_symlinked_folders(
    folder: str,
) -> None:
    graph = grimp.build_graph("chaosproxy", cache_dir=None)
    package = "chaosproxy" if folder == "chaosproxy" else f"chaosproxy.{folder}"
    base = ROOT / folder
    assert (folder == "chaosproxy") or (ROOT / "chaosproxy" / folder).is_symlink()
    expected = set()
    for path in base.rglob("*.py"):
        if folder == "chaosproxy" and path.resolve().parent != path.parent:
            continue
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        expected.add(".".join([package, *parts]))
    assert expected and expected <= graph.modules, sorted(expected - graph.modules)
