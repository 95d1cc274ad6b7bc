"""Hot reload: the watcher applies good edits once they settle and keeps the old on bad ones."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from chaosproxy.core.scenario import Scenario
from chaosproxy.proxy_addons.watch import Watcher


def edit(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000))


def poll(watcher: Watcher) -> None:
    asyncio.run(watcher.poll())


def test_a_change_applies_once_it_has_settled(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rules: [{name: a, fault: {type: error}}]\n")
    applied: list[tuple[Scenario, str]] = []
    watcher = Watcher(path, lambda sc, src: applied.append((sc, src)))
    poll(watcher)
    assert applied == []  # unchanged
    edit(path, "rules: [{name: b, fault: {type: error}}]\n", 1)
    poll(watcher)
    assert applied == []  # seen, not settled
    poll(watcher)
    assert [(sc.rules[0].name, src) for sc, src in applied] == [("b", str(path))]
    poll(watcher)
    assert len(applied) == 1 and watcher.reloads == 1


def test_a_broken_edit_is_logged_with_its_location_and_not_applied(tmp_path, caplog) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rules: []\n")
    applied: list[Scenario] = []
    watcher = Watcher(path, lambda sc, _: applied.append(sc), lambda: "current")
    edit(path, "rules:\n  - fault: {type: error, status: 99}\n", 1)
    with caplog.at_level(logging.ERROR, logger="chaosproxy"):
        poll(watcher)
        poll(watcher)
    assert applied == [] and watcher.failures == 1
    assert "changed but is invalid (keeping scenario current)" in caplog.text
    assert f"{path}:2:34: rules[0].fault.status: must be an HTTP status" in caplog.text
    edit(path, "rules: [{fault: {type: abort}}]\n", 2)
    poll(watcher)
    poll(watcher)
    assert len(applied) == 1 and applied[0].rules[0].fault[0].type == "abort"


def test_touch_without_change_and_a_deleted_file(tmp_path, caplog) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rules: []\n")
    applied: list[Scenario] = []
    watcher = Watcher(path, lambda sc, _: applied.append(sc))
    edit(path, "rules: []\n", 1)
    poll(watcher)
    poll(watcher)
    assert applied == []
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="chaosproxy"):
        poll(watcher)
        poll(watcher)
    assert "file: gone" in caplog.text and applied == []
    path.write_text("rules: [{fault: {type: error}}]\n")
    poll(watcher)
    poll(watcher)
    assert len(applied) == 1


def test_runs_on_the_loop_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rules: []\n")
    applied: list[Scenario] = []

    async def main() -> None:
        watcher = Watcher(path, lambda sc, _: applied.append(sc), interval=0.01)
        watcher.start()
        edit(path, "rules: [{fault: {type: error}}]\n", 1)
        for _ in range(500):
            if applied:
                break
            await asyncio.sleep(0.01)
        watcher.stop()

    asyncio.run(main())
    assert len(applied) == 1


def test_a_fifo_or_a_huge_file_in_place_of_the_scenario_is_a_warning(tmp_path, caplog) -> None:
    path = tmp_path / "s.yaml"
    good = "rules: [{fault: {type: error}}]\n"
    path.write_text(good)
    applied: list[Scenario] = []
    watcher = Watcher(path, lambda sc, _: applied.append(sc), lambda: "current")
    path.unlink()
    os.mkfifo(path)  # nobody ever writes to it: opening it for reading would wait for ever
    with caplog.at_level(logging.WARNING, logger="chaosproxy"):
        poll(watcher)
        poll(watcher)
    assert applied == [] and watcher.failures == 1
    assert (
        f"{path}: file: not a regular file (a FIFO): give a scenario file (keeping scenario "
        "current; it applies again when a scenario file is back)"
    ) in caplog.text
    path.unlink()
    with open(path, "wb") as f:
        f.truncate(50_000_000)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chaosproxy"):
        poll(watcher)
        poll(watcher)
    assert "file: too large: 50,000,000 bytes; a scenario is at most 1,000,000" in caplog.text
    path.unlink()
    path.write_text(good)  # the same text as before the FIFO: applied again
    poll(watcher)
    poll(watcher)
    assert len(applied) == 1 and watcher.failures == 2
