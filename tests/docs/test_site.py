"""The manual builds with ``mkdocs build --strict`` (any warning fails: a broken link, a
missing image, an anchor that does not exist, a fault note for no fault type)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaosproxy.core.fault import FAULT_TYPES
from tests.docs.examples import ROOT

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        message = "mkdocs is not installed (pip install -e '.[test]')"
        if os.environ.get("CHAOSPROXY_REQUIRE_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=150,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in (ROOT / "docs").glob("*.md"):
        name = "" if page.stem == "index" else f"{page.stem}/"
        assert (site / name / "index.html").exists(), page.name


def test_the_faults_page_lists_every_registered_type(site: Path) -> None:
    html = (site / "faults" / "index.html").read_text(encoding="utf-8")
    assert "faults:reference" not in html
    for name in FAULT_TYPES:
        assert f'<h2 id="{name}">' in html, name


def test_the_workshop_page_shows_both_screenshots(site: Path) -> None:
    html = (site / "workshop" / "index.html").read_text(encoding="utf-8")
    for size in ("1280x720", "1920x1080"):
        assert f"assets/screenshots/dashboard-{size}.png" in html
        assert (site / "assets" / "screenshots" / f"dashboard-{size}.png").stat().st_size > 0
