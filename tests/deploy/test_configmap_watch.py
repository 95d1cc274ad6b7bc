"""``--watch`` follows a scenario mounted from a ConfigMap: an update arrives as an atomic
swap of the ``..data`` symlink (tests/deploy/configmap.py does exactly what the kubelet
does), never as a write to the file the proxy was given."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chaosproxy.core.scenario import Scenario
from chaosproxy.proxy_addons.watch import Watcher
from tests.deploy.configmap import ConfigMapVolume

FIRST = "name: first\nrules: [{name: a, fault: {type: error, status: 503}}]\n"
SECOND = "name: other\nrules: [{name: b, fault: {type: error, status: 418}}]\n"  # same size


def poll(watcher: Watcher) -> None:
    asyncio.run(watcher.poll())


def test_a_configmap_swap_applies_once_even_with_the_same_size_and_time(tmp_path: Path) -> None:
    assert len(FIRST) == len(SECOND)
    volume = ConfigMapVolume(tmp_path / "scenarios", {"active.yaml": FIRST})
    path = volume.path("active.yaml")
    applied: list[tuple[Scenario, str]] = []
    watcher = Watcher(path, lambda sc, src: applied.append((sc, src)))
    poll(watcher)
    assert applied == []
    volume.update({"active.yaml": SECOND}, mtime_ns=path.stat().st_mtime_ns)
    poll(watcher)  # seen (a new file behind the same name) ...
    poll(watcher)  # ... and applied once it has settled
    assert [(sc.label, sc.rules[0].name, src) for sc, src in applied] == [("other", "b", str(path))]
    poll(watcher)
    assert watcher.reloads == 1 and watcher.failures == 0


def test_a_broken_configmap_update_keeps_the_scenario_and_the_next_good_one_applies(
    tmp_path: Path,
) -> None:
    volume = ConfigMapVolume(tmp_path / "scenarios", {"active.yaml": FIRST})
    applied: list[Scenario] = []
    watcher = Watcher(volume.path("active.yaml"), lambda sc, _: applied.append(sc))
    volume.update({"active.yaml": "rules: [{fault: {type: error, status: 99}}]\n"})
    poll(watcher)
    poll(watcher)
    assert applied == [] and watcher.failures == 1
    volume.update({"active.yaml": SECOND})
    poll(watcher)
    poll(watcher)
    assert [sc.label for sc in applied] == ["other"]
