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


def test_a_change_applies_once_it_has_settled(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rules: [{name: a, fault: {type: error}}]\n")
    applied: list[tuple[Scenario, str]] = []
    watcher = Watcher(path, lambda sc, src: applied.append((sc, src)))
    watcher.poll()
    assert applied == []  # unchanged
    edit(path, "rules: [{name: b, fault: {type: error}}]\n", 1)
    watcher.poll()
    assert applied == []  # seen, not settled
    watcher.poll()
    assert [(sc.rules[0].name, src) for sc, src in applied] == [("b", str(path))]
    watcher.poll()
    assert len(applied) == 1 and watcher.reloads == 1


def test_a_broken_edit_is_logged_with_its_location_and_not_applied(tmp_path, caplog) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rules: []\n")
    applied: list[Scenario] = []
    watcher = Watcher(path, lambda sc, _: applied.append(sc), lambda: "current")
    edit(path, "rules:\n  - fault: {type: error, status: 99}\n", 1)
    with caplog.at_level(logging.ERROR, logger="chaosproxy"):
        watcher.poll()
        watcher.poll()
    assert applied == [] and watcher.failures == 1
    assert "changed but is invalid (keeping scenario current)" in caplog.text
    assert f"{path}:2:34: rules[0].fault.status: must be an HTTP status" in caplog.text
    edit(path, "rules: [{fault: {type: abort}}]\n", 2)
    watcher.poll()
    watcher.poll()
    assert len(applied) == 1 and applied[0].rules[0].fault[0].type == "abort"


def test_touch_without_change_and_a_deleted_file(tmp_path, caplog) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rules: []\n")
    applied: list[Scenario] = []
    watcher = Watcher(path, lambda sc, _: applied.append(sc))
    edit(path, "rules: []\n", 1)
    watcher.poll()
    watcher.poll()
    assert applied == []
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="chaosproxy"):
        watcher.poll()
        watcher.poll()
    assert "file: gone" in caplog.text and applied == []
    path.write_text("rules: [{fault: {type: error}}]\n")
    watcher.poll()
    watcher.poll()
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
