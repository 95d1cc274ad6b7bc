"""The dashboard in a real headless Chromium (Debian's), driven by Playwright, against a
running ``chaosproxy demo``, as a projector shows it: at 1280x720 and 1920x1080.

One demo run is watched by both window sizes at once: traffic, ``outage`` (the breaker
opens and, with a 2 s reset timeout, cycles through half-open) and back to ``healthy``.
At each size: breaker, scenario and both charts in one screen without scrolling, canvases
sized to the device pixel ratio, round latency ticks, transition numbers from 10 up whole
and inside their card, half-open held on the label and marked on the charts, and "Reset
counters" clearing the transitions and the sent count.

The screenshots (dashboard-1280x720.png, dashboard-1920x1080.png) are kept in
test-artifacts/; with CHAOSPROXY_UPDATE_SCREENSHOTS=1 the run writes them to
docs/assets/screenshots/ instead, the committed pictures the documentation shows (so an
ordinary run never changes tracked files).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.demo.conftest import DemoProcess
from tests.support import wait_until

ROOT = Path(__file__).parents[2]
SCREENSHOTS = (
    ROOT / "docs" / "assets" / "screenshots"
    if os.environ.get("CHAOSPROXY_UPDATE_SCREENSHOTS")
    else ROOT / "test-artifacts"
)
SIZES = [(1280, 720), (1920, 1080)]
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

#: installed before the page's scripts: every change of the breaker label, with its time
#: and whether the text fits its box
WATCH_LABEL = """
window.labelChanges = [];
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("breaker-state");
  new MutationObserver(() => {
    const last = window.labelChanges[window.labelChanges.length - 1];
    if (!last || last.state !== el.dataset.state)
      window.labelChanges.push({ state: el.dataset.state, at: performance.now(),
                                 fits: el.scrollWidth <= el.clientWidth });
  }).observe(el, { attributes: true, attributeFilter: ["data-state"] });
});
"""

#: where the parts of the screen are, and what the canvases and axes hold
LAYOUT = """() => {
  const box = (id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
  };
  const charts = window.dashboard.charts();
  const canvas = (id) => {
    const c = document.getElementById(id);
    return { width: c.width, height: c.height, cssWidth: c.getBoundingClientRect().width,
             cssHeight: c.getBoundingClientRect().height };
  };
  return {
    viewport: { width: innerWidth, height: innerHeight, dpr: devicePixelRatio },
    scroll: { height: document.documentElement.scrollHeight,
              width: document.documentElement.scrollWidth },
    boxes: Object.fromEntries(["breaker-card", "breaker-state", "proxy-card",
      "proxy-scenario", "scenario-picker", "outcomes-card", "latency-card", "outcomes",
      "latency", "traffic-toggle", "reset"].map((id) => [id, box(id)])),
    canvases: { outcomes: canvas("outcomes"), latency: canvas("latency") },
    latencyTicks: charts.latency.scales.y.ticks.map((t) => t.value),
    latencyLabels: charts.latency.scales.y.ticks.map((t) => t.label),
    outcomeTicks: charts.outcomes.scales.y.ticks.map((t) => t.value),
    markers: { outcomes: charts.outcomes.$markers || [], latency: charts.latency.$markers || [] },
    areas: { outcomes: charts.outcomes.chartArea, latency: charts.latency.chartArea },
  };
}"""

#: the transitions list: each entry's number, whether it is clipped, and the card's box
TRANSITIONS = """() => {
  const card = document.getElementById("breaker-card").getBoundingClientRect();
  const log = document.getElementById("transitions");
  return {
    card: { left: card.left, right: card.right },
    log: { scrollWidth: log.scrollWidth, clientWidth: log.clientWidth },
    items: [...log.querySelectorAll("li")].map((li) => {
      const n = li.querySelector(".n");
      const r = li.getBoundingClientRect();
      const nr = n.getBoundingClientRect();
      return { n: n.textContent, text: li.textContent, left: r.left, right: r.right,
               nLeft: nr.left, nRight: nr.right, nClipped: n.scrollWidth > n.clientWidth };
    }),
  };
}"""


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


def watch_problems(
    target: Any, problems: list[str], allowed: Callable[[str], bool], label: str = ""
) -> None:
    """Note on ``problems`` what goes wrong in a Playwright page or context: console errors
    and warnings, uncaught errors, failed requests, and requests to a URL not ``allowed``."""
    prefix = f"{label} " if label else ""
    target.on(
        "console",
        lambda msg: (
            problems.append(f"{prefix}console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    errors = "weberror" if hasattr(target, "new_page") else "pageerror"  # a context: weberror
    target.on(errors, lambda e: problems.append(f"{prefix}page error: {getattr(e, 'error', e)}"))
    target.on(
        "request",
        lambda req: None if allowed(req.url) else problems.append(f"request: {req.url}"),
    )
    target.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))


def is_round(values: list[float]) -> bool:
    """Ticks at a 1, 2 or 5 times a power of ten step, each a multiple of that step."""
    if len(values) < 2:
        return False
    step = values[1] - values[0]
    exponent = math.floor(math.log10(step))
    mantissa = round(step / 10**exponent, 6)
    steady = all(math.isclose(b - a, step) for a, b in zip(values, values[1:], strict=False))
    multiples = all(math.isclose(v / step, round(v / step)) for v in values)
    return mantissa in (1, 2, 2.5, 5) and steady and multiples


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["left"] >= outer["left"] - 0.5
        and inner["top"] >= outer["top"] - 0.5
        and inner["right"] <= outer["right"] + 0.5
        and inner["bottom"] <= outer["bottom"] + 0.5
    )


def check_layout(size: tuple[int, int], layout: dict[str, Any]) -> None:
    """Everything in one screen, crisp canvases, round ticks, markers where the chart is."""
    width, height = size
    screen = {"left": 0, "top": 0, "right": width, "bottom": height}
    assert layout["viewport"]["width"] == width and layout["viewport"]["height"] == height
    assert layout["scroll"]["height"] <= height, f"{size}: the page scrolls: {layout['scroll']}"
    assert layout["scroll"]["width"] <= width, f"{size}: the page scrolls sideways"
    for name, box in layout["boxes"].items():
        assert inside(box, screen), f"{size}: {name} is not all on screen: {box}"
    for name in ("outcomes", "latency"):
        chart = layout["boxes"][name]
        assert chart["bottom"] - chart["top"] >= 0.25 * height, f"{size}: {name} too small"
        canvas = layout["canvases"][name]
        dpr = layout["viewport"]["dpr"]
        assert abs(canvas["width"] - canvas["cssWidth"] * dpr) <= 1, (size, name, canvas)
        assert abs(canvas["height"] - canvas["cssHeight"] * dpr) <= 1, (size, name, canvas)
    ticks = layout["latencyTicks"]
    assert is_round(ticks) and ticks[0] == 0, f"{size}: latency ticks {ticks}"
    assert all(label.endswith(" ms") for label in layout["latencyLabels"])
    outcome_ticks = layout["outcomeTicks"]
    assert is_round(outcome_ticks) and all(v == int(v) for v in outcome_ticks), outcome_ticks


def check_markers(size: tuple[int, int], layout: dict[str, Any]) -> None:
    for name in ("outcomes", "latency"):
        area = layout["areas"][name]
        half = [m for m in layout["markers"][name] if m["to"] == "half-open"]
        assert half, f"{size}: no half-open marker on the {name} chart: {layout['markers']}"
        assert all(area["left"] - 1 <= m["x"] <= area["right"] + 1 for m in half), (half, area)
    # both charts mark the same transitions (the same time axis, the same status)
    xs = {
        name: {round(m["time"], 3): m["x"] for m in layout["markers"][name]}
        for name in layout["markers"]
    }
    assert xs["outcomes"].keys() == xs["latency"].keys()


def check_transitions(size: tuple[int, int], listing: dict[str, Any], count: int) -> None:
    items = listing["items"]
    assert [item["n"] for item in items] == [str(n) for n in range(count, 0, -1)], items
    assert listing["log"]["scrollWidth"] <= listing["log"]["clientWidth"], listing["log"]
    card = listing["card"]
    for item in items:
        assert not item["nClipped"], f"{size}: number {item['n']} clipped"
        assert card["left"] <= item["nLeft"] and item["right"] <= card["right"], (size, item, card)


def held_half_open(changes: list[dict[str, Any]]) -> list[float]:
    """How long the label showed half-open each time it did (ms), the last one included
    only once it ended."""
    spans = []
    for change, after in zip(changes, changes[1:], strict=False):
        if change["state"] == "half-open":
            spans.append(after["at"] - change["at"])
    return spans


def test_dashboard_on_a_projector(start_demo: Callable[..., DemoProcess]) -> None:
    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    demo = start_demo().wait_ready()
    base = demo.url
    origin = urlsplit(base).netloc
    problems: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            pages = {}
            for size in [*SIZES, "hidpi"]:
                width, height = SIZES[0] if size == "hidpi" else size
                context = browser.new_context(
                    viewport={"width": width, "height": height},
                    device_scale_factor=2 if size == "hidpi" else 1,
                )
                context.add_init_script(WATCH_LABEL)
                page = context.new_page()
                # a request beyond the demo would be a CDN: the dashboard works offline
                watch_problems(
                    page, problems, lambda url: urlsplit(url).netloc == origin, str(size)
                )
                page.goto(f"{base}/", wait_until="load")
                pages[size] = page
            page = pages[SIZES[0]]
            for each in pages.values():
                expect(each.locator("#breaker-state")).to_have_attribute(
                    "data-state", "closed", timeout=15_000
                )
                expect(each.locator("#connection")).to_have_text("live")
                expect(each.locator("#proxy-scenario")).to_have_text("healthy", timeout=15_000)
                assert each.evaluate("() => typeof Chart") == "function"  # the vendored file

            # traffic from the 1280x720 page's controls, then the outage from its picker; a
            # 2 s reset timeout makes the breaker cycle open -> half-open -> open quickly
            expect(page.locator("#scenario-picker option[value=outage]")).to_have_count(
                1, timeout=15_000
            )
            page.locator("#traffic-rate").fill("10")
            page.locator("#traffic-toggle").click()
            expect(page.locator("#traffic-toggle")).to_have_text("Stop traffic", timeout=10_000)
            page.wait_for_function(f"() => {TOTALS}[0] >= 10", timeout=20_000)
            settings = requests.post(f"{base}/settings", json={"reset_timeout": 2}, timeout=5)
            assert settings.status_code == 200, settings.text
            page.locator("#scenario-picker").select_option("outage")
            page.locator("#scenario-apply").click()
            expect(page.locator("#scenario-message")).to_have_text("switched to outage")
            for each in pages.values():
                expect(each.locator("#proxy-scenario")).to_have_text("outage", timeout=10_000)
            expect(page.locator("#breaker-state")).to_have_attribute(
                "data-state", "open", timeout=20_000
            )

            def transitions() -> list[dict[str, Any]]:
                status = requests.get(f"{base}/status", timeout=5).json()
                return list(status["breaker"]["transitions"])

            wait_until(lambda: len(transitions()) >= 11, timeout=60, interval=0.2)
            page.wait_for_function(f"() => {TOTALS}[2] >= 15", timeout=20_000)  # fallbacks
            answer = requests.put(f"{base}/proxy/scenario", json={"name": "healthy"}, timeout=5)
            assert answer.status_code == 200, answer.text
            wait_until(
                lambda: (
                    requests.get(f"{base}/status", timeout=5).json()["breaker"]["state"] == "closed"
                ),
                timeout=30,
                interval=0.1,
            )
            history = transitions()
            assert [t["to"] for t in history[-2:]] == ["half-open", "closed"], history
            # the breaker was half-open for its one trial call: milliseconds
            assert history[-1]["time"] - history[-2]["time"] < 1.0, history[-2:]
            count = len(history)
            assert count >= 12

            for size, each in pages.items():
                # the label held half-open, then shows closed
                expect(each.locator("#breaker-state")).to_have_attribute(
                    "data-state", "closed", timeout=10_000
                )
                changes = each.evaluate("() => window.labelChanges")
                spans = held_half_open(changes)
                assert spans and spans[-1] >= 1500, f"{size}: half-open shown for {spans} ms"
                assert all(c["fits"] for c in changes), f"{size}: label overflows: {changes}"
                each.wait_for_function(
                    f"() => document.querySelectorAll('#transitions li').length === {count}",
                    timeout=5_000,
                )
                if size == "hidpi":
                    layout = each.evaluate(LAYOUT)
                    canvas = layout["canvases"]["latency"]
                    assert canvas["width"] == round(canvas["cssWidth"] * 2), canvas
                    continue
                each.wait_for_timeout(1_500)  # a few seconds of recovery on the charts
                layout = each.evaluate(LAYOUT)
                check_layout(size, layout)
                check_markers(size, layout)
                check_transitions(size, each.evaluate(TRANSITIONS), count)
                width, height = size
                each.screenshot(path=str(SCREENSHOTS / f"dashboard-{width}x{height}.png"))

            # stop the traffic, then "Reset counters": totals, transitions and sent all zero
            page.locator("#traffic-toggle").click()
            expect(page.locator("#traffic-toggle")).to_have_text("Start traffic", timeout=10_000)
            page.locator("#reset").click()
            for each in pages.values():
                expect(each.locator("#transitions li")).to_have_count(0, timeout=5_000)
                expect(each.locator("#traffic-info")).to_have_text("stopped (0 sent)")
                each.wait_for_function(f"() => {TOTALS}.slice(0, 4).join() === '0,0,0,0'")
                expect(each.locator("#breaker-state")).to_have_attribute("data-state", "closed")

            page.locator("#set-breaker").uncheck()
            expect(page.locator("#breaker-disabled")).to_be_visible(timeout=10_000)
        finally:
            browser.close()
    for width, height in SIZES:
        assert (SCREENSHOTS / f"dashboard-{width}x{height}.png").stat().st_size > 20_000
    assert problems == []
    assert demo.stop() == 0


def test_the_assessment_dialog_runs_quick_and_shows_the_card(
    start_demo: Callable[..., DemoProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Assess the client" opens a dialog; its button runs ``chaosproxy assess --quick``
    against the demo's client, shows the progress, then the report card with the demo's
    configuration, and links the HTML report; the dashboard's charts count none of it."""
    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    # the app's read timeout (the hang experiment's length) from 2 s to 0.5 s: a faster run
    monkeypatch.setenv("DEMO_READ_TIMEOUT", "0.5")
    demo = start_demo().wait_ready()
    base = demo.url
    origin = urlsplit(base).netloc
    problems: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            # every page of the context: the dashboard and the HTML report it opens
            context = browser.new_context(viewport={"width": 1280, "height": 720})
            watch_problems(context, problems, lambda url: urlsplit(url).netloc == origin)
            page = context.new_page()
            page.goto(f"{base}/", wait_until="load")
            expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
            expect(page.locator("#assessment")).to_be_hidden()
            page.locator("#assess-open").click()
            expect(page.locator("#assessment")).to_be_visible()
            expect(page.locator("#assess-state")).to_have_text("no assessment yet")
            page.locator("#assess-run").click()
            expect(page.locator("#assess-run")).to_be_disabled()
            expect(page.locator("#assess-card")).to_contain_text("- baseline", timeout=20_000)
            expect(page.locator("#assess-state")).to_have_attribute(
                "data-state", "done", timeout=60_000
            )
            card = page.locator("#assess-card").text_content() or ""
            # the card is shown from its first line, past the progress lines above it
            page.wait_for_function(
                "() => document.getElementById('assess-card').scrollTop > 0", timeout=5_000
            )
            expect(page.locator("#assess-run")).to_be_enabled()
            page.screenshot(path=str(SCREENSHOTS / "dashboard-assessment.png"))
            report_link = page.locator("#assess-report")
            expect(report_link).to_be_visible()
            with page.context.expect_page() as opened:
                report_link.click()
            report = opened.value
            report.wait_for_load_state("load")
            timelines = report.locator("svg.timeline").count()
            report.screenshot(path=str(SCREENSHOTS / "assess-report-from-demo.png"), full_page=True)
            page.locator("#assess-close").click()
            expect(page.locator("#assessment")).to_be_hidden()
        finally:
            browser.close()
    lines = {" ".join(line.split()) for line in card.splitlines()}
    # the demo's configuration: 3 attempts, a 0.5 s read timeout, exponential backoff
    assert any(line.startswith("attempts 3 ") for line in lines), card
    assert any(line.startswith("timeout 0.5") for line in lines), card
    assert any(line.startswith("backoff exponential") for line in lines), card
    assert any(line.startswith("retries 4xx no ") for line in lines), card
    assert any(line.startswith("fallback yes ") for line in lines), card
    assert any(line.startswith("circuit breaker not probed (--quick)") for line in lines), card
    assert timelines >= 5
    status = requests.get(f"{base}/status", timeout=5).json()
    assert sum(status["totals"].values()) == 0, status["totals"]  # the charts counted none
    assert problems == []
    assert demo.stop() == 0
