"""The stop watchdog of ``chaosproxy run`` (cli/run.py ``_stop_deadline``): after a stop
signal it ends the process, saying which of two things happened. The hung loop through a
real proxy: tests/reliability/test_graceful_stop.py."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chaosproxy.cli import run


@pytest.fixture(autouse=True)
def _short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.2 s instead of 1 s, so the unit tier stays quick; the messages say the figure."""
    monkeypatch.setattr(run, "STOP_DEADLINE", 0.2)


def test_a_loop_that_does_not_answer_ends_the_process_within_the_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loop = asyncio.new_event_loop()  # never run: its callbacks never happen, as when hung
    ended: list[int] = []
    try:
        run._stop_deadline(loop, hard=30.0, end=ended.append).join(timeout=10)
    finally:
        loop.close()
    assert ended == [1]
    assert capsys.readouterr().err == (
        "chaosproxy: did not stop within 0.2s of the signal (the event loop is not answering); "
        "exiting now\n"
    )


def test_a_loop_that_answers_but_does_not_finish_stopping_is_ended_after_the_hard_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    ended: list[int] = []
    try:
        run._stop_deadline(loop, hard=0.5, end=ended.append).join(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(timeout=10)
        loop.close()
    assert ended == [1]
    err = capsys.readouterr().err
    assert err == (
        "chaosproxy: still stopping 0.5s after the signal (the event loop answers, but the "
        "shutdown has not finished); exiting now\n"
    )
    assert "not answering" not in err


def test_the_watchdog_leaves_when_the_loop_is_closed() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    ended: list[int] = []
    run._stop_deadline(loop, hard=30.0, end=ended.append).join(timeout=10)
    assert ended == []
