"""The dashboard in a real headless Chromium (Debian's), driven by Playwright, against a
running ``chaosproxy demo``: it loads cleanly, shows the breaker closed, switches to
``outage`` from the picker and shows the breaker open while traffic runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.demo.conftest import DemoProcess

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: the outcome totals the dashboard shows: [ok, ok after retry, fallback, error, cached cities]
TOTALS = "(document.getElementById('totals').textContent.match(/\\d+/g) || []).map(Number)"


def chromium_path() -> str:
    """Debian's chromium; skip without it or without Playwright (fail when CI requires)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    if path is None:
        problem = "chromium is not installed (make sysdeps installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CHAOSPROXY_REQUIRE_TOOLS"):
            pytest.fail(problem)
        pytest.skip(problem)
    assert path is not None
    return path


def test_dashboard_shows_the_breaker_open_under_outage(
    start_demo: Callable[..., DemoProcess],
) -> None:
    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    demo = start_demo().wait_ready()
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
            page.goto(f"{demo.url}/", wait_until="load")

            breaker = page.locator("#breaker-state")
            expect(breaker).to_have_attribute("data-state", "closed", timeout=15_000)
            expect(page.locator("#connection")).to_have_text("live")
            expect(page.locator("#proxy-scenario")).to_have_text("healthy", timeout=15_000)
            expect(page.locator("#scenario-picker option[value=outage]")).to_have_count(
                1, timeout=15_000
            )
            page.screenshot(path=str(ARTIFACTS / "dashboard-healthy.png"), full_page=True)

            page.locator("#traffic-rate").fill("10")
            page.locator("#traffic-toggle").click()
            expect(page.locator("#traffic-toggle")).to_have_text("Stop traffic", timeout=10_000)
            page.wait_for_function(f"() => {TOTALS} && {TOTALS}[0] >= 10", timeout=20_000)
            page.locator("#scenario-picker").select_option("outage")
            page.locator("#scenario-apply").click()
            expect(page.locator("#scenario-message")).to_have_text("switched to outage")
            expect(page.locator("#proxy-scenario")).to_have_text("outage", timeout=10_000)
            expect(breaker).to_have_attribute("data-state", "open", timeout=20_000)
            expect(breaker).to_have_text("open")
            expect(page.locator("#transitions li").first).to_contain_text("closed → open")
            # let the charts show a few seconds of fallbacks and errors before the picture
            page.wait_for_function(f"() => {TOTALS}[2] + {TOTALS}[3] >= 15", timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard-outage.png"), full_page=True)

            page.locator("#set-breaker").uncheck()
            expect(page.locator("#breaker-disabled")).to_be_visible(timeout=10_000)
            page.locator("#traffic-toggle").click()
            expect(page.locator("#traffic-toggle")).to_have_text("Start traffic", timeout=10_000)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard-outage.png").stat().st_size > 10_000
    assert problems == []
    assert demo.stop() == 0
