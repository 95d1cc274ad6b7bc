"""The terminal report card and the live progress, on the rendered text."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import pytest
from rich.console import Console

from chaosproxy.testing.assess import card
from tests.assess.reports import Verdict, demo_document, sample_document

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def rendered(
    doc: dict[str, Any], *, terminal: bool = False, width: int = 200, **kwargs: Any
) -> str:
    console = Console(
        file=io.StringIO(),
        width=width,
        force_terminal=terminal,
        color_system=None if not terminal else "standard",
    )
    card.render(doc, console, **kwargs)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def row(text: str, label: str) -> str:
    """The card's row for an item (its label starts the line), with the lines it wraps
    onto (blank in the first column), as one line of words."""
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines) if line.strip().startswith(label + "  ")]
    assert len(starts) == 1, f"no single line for {label!r} in:\n{text}"
    words = lines[starts[0]].split()
    for line in lines[starts[0] + 1 :]:
        if not line.strip() or not line.startswith("      "):
            break
        words += line.split()
    return " ".join(words)


def test_the_card_shows_every_policy_item_with_its_evidence() -> None:
    text = rendered(sample_document())
    assert "GET http://127.0.0.1:5000/weather/berlin -> upstream http://127.0.0.1:5001" in text
    assert "full battery, seed 1, 41.2 s, started 2026-12-06T07:00:00Z (chaosproxy 0.1.0)" in text
    assert row(text, "timeout") == "timeout 2 s high 2 hang"
    assert row(text, "attempts") == "attempts 3 high 3 fail_until_give_up"
    assert row(text, "backoff") == (
        "backoff exponential: base 0.1 s, x2, jitter medium 6 fail_until_give_up"
    )
    assert row(text, "Retry-After").startswith("Retry-After honoured, capped at 2 s high 2")
    assert row(text, "retries 4xx") == "retries 4xx no high 2 client_error_404"
    assert row(text, "retries a reset") == "retries a reset yes high 2 reset"
    assert "not probed (assess with --trigger-method POST)" in row(text, "retries a POST")
    assert row(text, "circuit breaker").startswith(
        "circuit breaker opens after 5 failures, reset 10 s, 1 half-open probe medium 1 breaker"
    )
    assert row(text, "fallback").startswith("fallback yes (2xx while the upstream fails) high")
    assert row(text, "malformed body").startswith("malformed body a failure")
    assert " low " in row(text, "malformed body")
    assert row(text, "app latency budget") == "app latency budget 2.3 s medium 2 hang"
    assert "connect timeout" not in text  # null: the same as the timeout
    assert "expect" not in text  # no gate given: no verdict column
    assert not ANSI.search(text)  # not a terminal: plain


def test_one_line_per_experiment_unknown_ones_included() -> None:
    doc = sample_document()
    text = rendered(doc)
    experiments = text[text.index("Experiments") :]
    for experiment in doc["experiments"]:
        assert f" {experiment['name']} " in experiments
    assert row(experiments, "fail_until_give_up").startswith(
        "fail_until_give_up 503 until the client gives up 3 attempts 3,3,3; app 503 x3; gaps_s 0.124,0.254,"
    )
    assert row(experiments, "baseline").endswith("2 attempts 1,1; app 200 x2")
    assert row(experiments, "slow_body").endswith("0 custom rendered generically; ratio 0.5")


def test_a_narrow_console_leaves_out_where_each_item_comes_from() -> None:
    text = rendered(sample_document(), width=100)
    assert row(text, "attempts") == "attempts 3 high 3"
    assert "fail_until_give_up" in text[text.index("Experiments") :]
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100


def test_colour_only_on_a_terminal() -> None:
    coloured = rendered(sample_document(), terminal=True)
    assert ANSI.search(coloured)
    assert "high" in ANSI.sub("", coloured)


def test_verdicts_mark_each_item_and_explain_the_misses() -> None:
    verdicts = [
        Verdict("attempts", True, "attempts 3 is within 2..4"),
        Verdict("timeout_s", False, "timeout_s 2 s is not <= 1.5"),
        Verdict("breaker", False, "breaker required, opens after 5 > 3"),
        Verdict("backoff.kind", True, "exponential"),
        Verdict("backoff.jitter", True, "jitter"),
    ]
    text = rendered(sample_document(), verdicts=verdicts)
    assert row(text, "attempts").endswith(" ok")
    assert row(text, "timeout").endswith(" MISS")
    assert row(text, "circuit breaker").endswith(" MISS")
    assert row(text, "backoff").endswith(" ok")  # backoff.kind and backoff.jitter
    assert not row(text, "retries 4xx").endswith(("ok", "MISS"))  # not in the gate
    assert "2 expectation(s) missed:" in text
    assert "x timeout_s: timeout_s 2 s is not <= 1.5" in text
    assert "x breaker: breaker required, opens after 5 > 3" in text
    met = rendered(sample_document(), verdicts=verdicts[:1])
    assert "all 1 expectation(s) met" in met and "missed" not in met


def test_null_items_say_not_probed_or_none_seen() -> None:
    doc = sample_document()
    doc["quick"] = True
    doc["policy"]["breaker"] = None
    # as the runner says it: no samples
    doc["evidence"]["breaker"] = {
        "samples": 0,
        "confidence": "low",
        "experiments": [],
        "note": "not probed (--quick)",
    }
    doc["policy"]["timeout_s"] = None
    doc["policy"]["retry_after"] = {"honoured": False, "cap_s": None}
    text = rendered(doc)
    assert "quick battery" in text
    assert row(text, "circuit breaker").startswith("circuit breaker not probed (--quick)")
    assert row(text, "timeout").startswith("timeout none within the probe's cap")
    assert row(text, "Retry-After").startswith("Retry-After ignored")
    doc["policy"]["connect_timeout_s"] = 0.5
    assert row(rendered(doc), "connect timeout").startswith("connect timeout 0.5 s")
    doc["quick"] = False
    doc["evidence"]["breaker"] = {"samples": 1, "confidence": "high", "experiments": ["breaker"]}
    assert row(rendered(doc), "circuit breaker").startswith("circuit breaker none seen")


@pytest.mark.parametrize(
    ("backoff", "words"),
    [
        (
            {"kind": "none", "base_s": None, "multiplier": None, "cap_s": None, "jitter": False},
            "none (retries at once)",
        ),
        (
            {"kind": "constant", "base_s": 0.25, "multiplier": 1.0, "cap_s": None, "jitter": False},
            "constant: base 0.25 s, no jitter",
        ),
        (
            {"kind": "linear", "base_s": 0.1, "multiplier": None, "cap_s": None, "jitter": True},
            "linear: base 0.1 s, jitter",
        ),
        (
            {
                "kind": "linear",
                "base_s": 0.1,
                "multiplier": None,
                "cap_s": None,
                "jitter": False,
                "increment_s": 0.05,
            },
            "linear: base 0.1 s, +0.05 s each, no jitter",
        ),
        (
            {
                "kind": "exponential",
                "base_s": 0.2,
                "multiplier": 2,
                "cap_s": None,
                "jitter": False,
                "first_immediate": True,
            },
            "first retry at once, then exponential: base 0.2 s, x2, no jitter",
        ),
        (
            {"kind": "exponential", "base_s": 0.05, "multiplier": 3, "cap_s": 1.0, "jitter": None},
            "exponential: base 0.05 s, x3, cap 1 s, no jitter",
        ),
    ],
)
def test_backoff_in_words(backoff: dict[str, Any], words: str) -> None:
    assert card.describe_backoff(backoff) == words


def test_a_command_target_and_its_exit_codes() -> None:
    doc = sample_document()
    doc["target"] = {
        "trigger": "command",
        "url": None,
        "method": None,
        "command": ["python", "client.py"],
        "upstream": "http://127.0.0.1:9",
    }
    for experiment in doc["experiments"]:
        for sample in experiment["samples"]:
            sample["outcome"].update(status=None, exit_code=1)
    doc["experiments"][0]["samples"][0]["outcome"]["exit_code"] = None
    text = rendered(doc)
    assert "command `python client.py` -> upstream http://127.0.0.1:9" in text
    assert row(text[text.index("Experiments") :], "baseline").endswith("app no answer, exit 1")


def test_an_object_with_to_json_is_rendered_like_its_document() -> None:
    class Assessment:
        def to_json(self) -> dict[str, Any]:
            return sample_document()

    assert rendered(Assessment()) == rendered(sample_document())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not the document's dict"):
        card.document(type("Bad", (), {"to_json": lambda self: "{}"})())


@dataclass(frozen=True)
class Event:
    experiment: str
    title: str
    sample: int
    samples: int
    done: bool = False


RUN = [
    Event("baseline", "No fault", 1, 2),
    Event("baseline", "No fault", 2, 2),
    Event("baseline", "No fault", 2, 2, done=True),
    Event("hang", "The upstream hangs", 1, 1),
    Event("hang", "The upstream hangs", 1, 1, done=True),
    Event("breaker", "Outage until a breaker opens", 1, 0),
    Event("breaker", "Outage until a breaker opens", 2, 0),
    Event("breaker", "Outage until a breaker opens", 7, 7, done=True),
]


def test_progress_without_a_terminal_is_a_line_per_start_and_end() -> None:
    console = Console(file=io.StringIO(), width=100)
    ticks = iter([0.0, 1.25, 2.0, 4.5, 5.0, 17.0])
    with card.LiveProgress(console, clock=lambda: next(ticks)) as progress:
        for event in RUN:
            progress(event)
    assert console.file.getvalue().splitlines() == [  # type: ignore[attr-defined]
        "- baseline: No fault (2 samples)",
        "  baseline: done, 2/2 in 1.2 s",
        "- hang: The upstream hangs (1 sample)",
        "  hang: done, 1/1 in 2.5 s",
        "- breaker: Outage until a breaker opens",  # a total not known in advance
        "  breaker: done, 7/7 in 12.0 s",
    ]


def test_progress_on_a_terminal_is_a_bar_per_experiment() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    progress = card.live_progress(console)
    assert progress.live
    for event in RUN:
        progress(event)
    progress.close()
    text = ANSI.sub("", console.file.getvalue())  # type: ignore[attr-defined]
    assert "baseline: No fault" in text and "hang: The upstream hangs" in text
    assert "2/2" in text and "1/1" in text and "7/7" in text
    assert progress._bar is None  # closed: the live display stopped


def test_the_sample_is_a_valid_document_and_the_model_renders_like_it() -> None:
    from chaosproxy.testing.assess.model import Assessment, Progress, json_schema
    from tests.support import validate_json

    doc = sample_document()
    validate_json(doc, json_schema())
    assert rendered(Assessment.from_json(doc)) == rendered(doc)  # type: ignore[arg-type]
    console = Console(file=io.StringIO(), width=100)
    card.live_progress(console)(Progress("baseline", "No fault", 1, 2))
    assert console.file.getvalue() == "- baseline: No fault (2 samples)\n"  # type: ignore[attr-defined]


def test_a_real_assessment_of_the_demo_reads_as_its_configuration() -> None:
    text = rendered(demo_document())
    assert row(text, "timeout").startswith("timeout 2 s high")  # READ_TIMEOUT
    assert row(text, "attempts").startswith("attempts 3 high")  # RETRY_ATTEMPTS
    assert row(text, "backoff").startswith("backoff exponential: base 0.108 s, x1.99, jitter")
    assert row(text, "Retry-After").startswith("Retry-After honoured, capped at 2 s")
    assert row(text, "circuit breaker").startswith(
        "circuit breaker opens after 5 failures, reset 10.2 s, 1 half-open probe high"
    )
    experiments = text[text.index("Experiments") :]
    assert "gaps_s 0.122,0.215 | 0.147,0.276 |" in row(experiments, "fail_until_give_up")
    assert "gaps_s" not in row(experiments, "baseline")  # an empty finding is left out
