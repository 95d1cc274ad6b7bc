"""``chaosproxy assess`` in process: its schema, and the usage errors it refuses before
starting anything (the assessment itself runs in tests/assess)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import jsonschema
import pytest

from chaosproxy.cli import assess as assess_cli
from chaosproxy.testing.assess.model import ExperimentResult, Sample, json_schema
from chaosproxy.testing.assess.runner import AssessError, Runner, UrlTrigger
from tests.cli.test_commands import chaosproxy
from tests.support import free_port

if TYPE_CHECKING:
    from chaosproxy.testing.api import ChaosProxy


def test_schema_prints_the_published_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = chaosproxy(capsys, "assess", "--schema")
    assert code == 0
    schema = json.loads(out)
    assert schema == json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --upstream URL"),
        (["--upstream", "http://127.0.0.1:1"], "give either --trigger-url URL or a command"),
        (
            ["--upstream", "http://127.0.0.1:1", "--trigger-url", "http://a/", "--", "curl"],
            "give either --trigger-url URL or a command",
        ),
        (
            ["--upstream", "http://127.0.0.1:1", "--trigger-url", "http://a/", "--listen", "x"],
            "--listen 'x': give PORT or HOST:PORT",
        ),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = chaosproxy(capsys, "assess", *argv)
    assert code == 2
    assert message in err


def test_a_bad_policy_file_is_located_before_anything_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("attempts: 2..4\nbreaker: maybe\n")
    code, out, err = chaosproxy(
        capsys,
        "assess",
        "--upstream",
        "http://127.0.0.1:1",
        "--trigger-url",
        "http://127.0.0.1:1/x",
        "--expect",
        str(policy),
    )
    assert code == 2
    assert err.strip() == (
        f"{policy}:2:10: breaker: 'maybe': write required, forbidden, "
        "or a mapping of opens_after, reset_s, half_open_probes"
    )
    assert "Traceback" not in out + err


@pytest.mark.wire  # connects (and is refused); no proxy started, so it takes milliseconds
def test_a_trigger_url_that_refuses_connections_is_a_clear_error() -> None:
    app = f"http://127.0.0.1:{free_port()}/weather/berlin"  # nothing listens there
    trigger = UrlTrigger(app, timeout=5)
    runner = Runner(
        cast("ChaosProxy", None), trigger, upstream="http://127.0.0.1:1", proxy_url="http://p"
    )
    baseline = ExperimentResult("baseline", "Healthy upstream", {}, [Sample(0, trigger())])
    runner.results["baseline"] = baseline
    with pytest.raises(AssessError) as raised:
        runner._check_baseline()
    assert str(raised.value) == (
        f"the trigger failed with a healthy upstream: GET {app}: "
        "[Errno 111] Connection refused (is the app listening there?)"
    )


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_the_card_is_as_wide_as_in_the_docs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert assess_cli._width(io.StringIO()) == assess_cli.PLAIN_WIDTH == 100
    assert assess_cli._width(_Tty()) is None  # a terminal: its own width
    monkeypatch.setenv("COLUMNS", "140")
    assert assess_cli._width(io.StringIO()) is None  # Rich reads COLUMNS itself
