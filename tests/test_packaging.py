"""What `pip install chaosproxy` gives a user outside this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of this checkout, unpacked into a plain directory.

    A copy, because setuptools packs whatever an earlier build left in ``build/lib``."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,  # chaosproxy/proxy_addons, demo_app, scenarios are symlinks
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "site", "*.egg-info", "__pycache__",
            ".*_cache", ".hypothesis", "test-artifacts", "node_modules",
        ),  # fmt: skip
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("chaosproxy-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


def test_wheel_ships_scenarios_schema_and_the_console_script(installed: Path) -> None:
    shipped = {p.name for p in (installed / "chaosproxy" / "scenarios").iterdir()}
    assert {"schema.json", "outage.yaml", "flaky.yaml", "healthy.yaml"} <= shipped
    [info] = installed.glob("chaosproxy-*.dist-info")
    entry_points = (info / "entry_points.txt").read_text()
    assert "chaosproxy = chaosproxy.cli.main:main" in entry_points
    assert "[pytest11]\nchaosproxy = chaosproxy.testing.plugin" in entry_points


def test_wheel_ships_the_demo_dashboard(installed: Path) -> None:
    """The demo's templates and static files (data directories, not packages)."""
    here = ROOT / "demo_app" / "dashboard"
    wanted = {
        p.relative_to(here) for p in here.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    there = installed / "chaosproxy" / "demo_app" / "dashboard"
    assert wanted and {p.relative_to(there) for p in there.rglob("*") if p.is_file()} >= wanted


def test_shipped_names_resolve_outside_a_checkout(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from chaosproxy.cli.main import main; sys.exit(main(sys.argv[1:]))",
            "validate",
            "outage",
            "flaky",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert str(installed / "chaosproxy" / "scenarios" / "outage.yaml") in out.stdout


def test_wheel_installs_one_import_name(installed: Path) -> None:
    """Only `chaosproxy` lands in site-packages: no generic `proxy_addons` or `demo_app`."""
    top = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")}
    assert top == {"chaosproxy"}
    for layer in ("core", "faults", "control", "cli", "testing", "proxy_addons", "demo_app"):
        assert (installed / "chaosproxy" / layer / "__init__.py").is_file(), layer
    assert (installed / "chaosproxy" / "proxy_addons" / "_internals" / "__init__.py").is_file()


def test_importing_chaosproxy_imports_no_mitmproxy(installed: Path, tmp_path: Path) -> None:
    code = (
        "import sys, chaosproxy; "
        "assert callable(chaosproxy.load_scenario); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mitmproxy'))"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )
    assert out.stdout.strip() == "[]"
