"""The HTML report: self-contained, one timeline per experiment, every attempt drawn."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from chaosproxy.testing.assess import html
from tests.assess.reports import Verdict, demo_document, sample_document


class Parsed(HTMLParser):
    """Every start tag with its attributes, and the text inside each element kind."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.open: list[str] = []
        self.text: dict[str, list[str]] = {}
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in ("meta", "br", "line", "rect", "path"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.open:
            self.text.setdefault(self.open[-1], []).append(data)

    def having(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and (cls is None or cls in a.get("class", "").split())
        ]


def attempts_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for e in doc["experiments"] for s in e["samples"] for a in s["attempts"]]


def test_the_file_refers_to_nothing_outside_itself(tmp_path: Path) -> None:
    path = html.write(sample_document(), tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    page = Parsed(text)
    assert not page.having("img") and not page.having("iframe")
    assert page.having("link") == [{"rel": "icon", "href": "data:,"}]  # no icon to fetch
    scripts = page.having("script")
    assert [s.get("type") for s in scripts] == ["application/json"]  # data, never run
    for _, attrs in page.tags:
        assert "src" not in attrs, attrs
        href = attrs.get("href", "#")
        assert href.startswith(("#", "data:")), f"a link out of the file: {href}"
    assert "url(" not in text and "@import" not in text


def test_one_timeline_per_experiment_with_every_attempt(tmp_path: Path) -> None:
    doc = sample_document()
    page = Parsed(html.render(doc))
    with_samples = [e for e in doc["experiments"] if e["samples"]]
    timelines = page.having("svg", "timeline")
    assert [t["data-experiment"] for t in timelines] == [e["name"] for e in with_samples]
    assert len(page.having("rect", "attempt")) == len(attempts_of(doc))
    assert len(page.having("path", "answer")) == sum(len(e["samples"]) for e in with_samples)
    sections = [s["id"] for s in page.having("section", "experiment")]
    assert sections == [f"exp-{e['name']}" for e in doc["experiments"]]
    assert "no samples recorded" in "".join(page.text["p"])


def test_attempts_are_coloured_by_what_the_proxy_did() -> None:
    doc = sample_document()
    text = html.render(doc)
    for name, kinds in {
        "baseline": ["ok", "ok"],
        "one_503": ["status5", "ok"],
        "client_error_404": ["status4", "status4"],
        "reset": ["cut", "cut", "cut"],
        "hang": ["hang"],
    }.items():
        svg = re.search(rf'<svg [^>]*data-experiment="{name}".*?</svg>', text)
        assert svg, name
        assert re.findall(r'class="attempt k-(\w+)"', svg.group(0)) == kinds, name


@pytest.mark.parametrize(
    ("attempt", "kind"),
    [
        ({"status": 200, "fault": None}, "ok"),
        ({"status": 304, "fault": None}, "ok"),
        ({"status": 503, "fault": "error 503"}, "status5"),
        ({"status": 429, "fault": "rate_limit"}, "status5"),
        ({"status": 404, "fault": "error"}, "status4"),
        ({"status": None, "fault": "abort reset"}, "cut"),
        ({"status": None, "fault": None, "outcome": "reset"}, "cut"),
        ({"status": None, "fault": "timeout", "outcome": "client_disconnected"}, "hang"),
        ({"status": None, "fault": None, "outcome": "client_disconnected"}, "hang"),
        ({"status": 200, "fault": "malformed truncate"}, "malformed"),
        ({"status": None, "fault": None}, "other"),
    ],
)
def test_attempt_kinds(attempt: dict[str, Any], kind: str) -> None:
    assert html.attempt_kind(attempt) == kind


def test_the_waits_between_attempts_are_annotated() -> None:
    doc = sample_document()
    text = html.render(doc)
    svg = re.search(r'<svg [^>]*data-experiment="fail_until_give_up".*?</svg>', text)
    assert svg
    labels = re.findall(r'class="gap-label"[^>]*>([^<]+)<', svg.group(0))
    gaps = [  # from the end of one attempt to the start of the next
        b["t_s"] - (a["t_s"] + a["duration_s"])
        for sample in doc["experiments"][2]["samples"]
        for a, b in zip(sample["attempts"], sample["attempts"][1:], strict=False)
    ]
    assert len(gaps) == 6
    assert labels == [f"{g:.3g} s" for g in gaps]
    assert len(re.findall(r"<title>waited ", svg.group(0))) == len(gaps)


def test_the_summary_table_and_the_verdicts() -> None:
    verdicts = [Verdict("attempts", True, "3 in 2..4"), Verdict("timeout_s", False, "2 s > 1.5")]
    page = Parsed(html.render(sample_document(), verdicts=verdicts))
    cells = " | ".join("".join(page.text.get("td", [])).split("\n"))
    assert "exponential: base 0.1 s, x2, jitter" in cells
    assert "opens after 5 failures, reset 10 s, 1 half-open probe" in cells
    assert "MISS: 2 s &gt; 1.5" not in cells and "MISS: 2 s > 1.5" in "".join(page.text["span"])
    assert "1 expectation(s) missed" in "".join(page.text["p"])
    links = [a["href"] for a in page.having("a")]
    assert "#exp-fail_until_give_up" in links
    assert "#exp-fallback" not in links  # evidence names an experiment that did not run


def test_text_from_the_app_is_escaped() -> None:
    doc = sample_document()
    doc["experiments"][0]["title"] = "<script>alert(1)</script>"
    doc["experiments"][0]["samples"][0]["attempts"][0]["path"] = "/a?<b>&c"
    doc["target"]["url"] = "http://127.0.0.1:5000/</script><script>x()</script>"
    text = html.render(doc)
    assert "<script>alert(1)" not in text and "<script>x()" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    embedded = re.search(
        r'<script type="application/json" id="assessment">(.*?)</script>', text, re.S
    )
    assert embedded and json.loads(embedded.group(1)) == doc  # the whole record, intact


@pytest.mark.parametrize(
    ("span", "step"),
    [(0.012, 0.002), (0.41, 0.1), (0.2, 0.05), (2.3, 0.5), (10.6, 2.0), (0.0, 0.0002)],
)
def test_time_axis_steps_are_round(span: float, step: float) -> None:
    assert html.nice_step(span) == pytest.approx(step)


def test_the_breaker_is_one_story_on_one_axis() -> None:
    """A real run: the breaker's samples (fail, wait for the probe, heal) are one row from
    the experiment's start, with the moment the upstream healed marked."""
    doc = demo_document()
    breaker = next(e for e in doc["experiments"] if e["name"] == "breaker")
    assert html.is_one_story(breaker)
    svg = re.search(r'<svg [^>]*data-experiment="breaker".*?</svg>', html.render(doc), re.S)
    assert svg
    page = Parsed(svg.group(0))
    assert "".join(page.text["text"]).count("all calls") == 1
    assert len(page.having("rect", "attempt")) == sum(
        len(s["attempts"]) for s in breaker["samples"]
    )
    assert len(page.having("path", "answer")) == len(breaker["samples"])
    assert "upstream healed" in "".join(page.text["text"])
    # the wait for the half-open probe (about the reset timeout, 10 s) is annotated
    waits = [
        float(w.split()[0]) for w in re.findall(r'class="gap-label"[^>]*>([^<]+)<', svg.group(0))
    ]
    assert any(9.5 <= w <= 11 for w in waits), waits
    others = [e for e in doc["experiments"] if e["name"] != "breaker"]
    assert not any(html.is_one_story(e) for e in others)
