"""The HTML report in Debian's Chromium (Playwright): it opens from a file without a
console error or a request beyond itself, every timeline is drawn and fits the page, and
a screenshot is kept in test-artifacts/assess-report.png (a real assessment of the demo;
the hand-made sample, with an experiment no report knows, must open as cleanly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaosproxy.testing.assess import html
from tests.assess.reports import demo_document, sample_document
from tests.demo.test_browser import CHROMIUM_ARGS, chromium_path, watch_problems

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


@pytest.mark.parametrize(
    ("doc", "shot_name"),
    [(demo_document(), "assess-report.png"), (sample_document(), "assess-report-sample.png")],
    ids=["demo", "sample"],
)
def test_the_report_opens_in_chromium_without_errors(
    doc: dict[str, Any], shot_name: str, tmp_path: Path
) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    page_url = html.write(doc, tmp_path / "report.html").resolve().as_uri()
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / shot_name
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            watch_problems(page, problems, lambda url: url == page_url)
            page.goto(page_url, wait_until="load")
            drawn = page.evaluate(
                """() => [...document.querySelectorAll('svg.timeline')].map((svg) => {
                  const r = svg.getBoundingClientRect();
                  return { name: svg.dataset.experiment, width: r.width, height: r.height,
                           right: r.right, bars: svg.querySelectorAll('rect.attempt').length };
                })"""
            )
            page_width = page.evaluate("() => document.documentElement.scrollWidth")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    expected = [e for e in doc["experiments"] if e["samples"]]
    assert [d["name"] for d in drawn] == [e["name"] for e in expected]
    for d, e in zip(drawn, expected, strict=True):
        assert d["bars"] == sum(len(s["attempts"]) for s in e["samples"]), d
        assert d["width"] > 600 and d["height"] > 40, d
        assert d["right"] <= 1280, d
    assert page_width <= 1280, "the report scrolls sideways"
    assert problems == []
    assert shot.stat().st_size > 20_000
