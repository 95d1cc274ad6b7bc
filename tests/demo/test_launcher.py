"""The demo launcher's start order, with stand-in parts (no processes): the app starts only
once the upstream and the proxy answer their health checks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from chaosproxy.demo_app.launcher import Demo, DemoError, Part


@dataclass
class FakePart(Part):
    """A part whose readiness the test scripts: ready after ``polls_until_ready`` checks."""

    polls_until_ready: int | None = 0
    log: list[str] = field(default_factory=list)
    polls: int = 0
    running: bool = False

    def start(self, env: dict[str, str]) -> None:
        self.running = True
        self.log.append(f"start {self.name}")

    def exited(self) -> int | None:
        return None

    def is_ready(self) -> bool:
        assert self.running, f"{self.name} polled before it started"
        self.polls += 1
        ready = self.polls_until_ready is not None and self.polls > self.polls_until_ready
        if ready and f"ready {self.name}" not in self.log:
            self.log.append(f"ready {self.name}")
        return ready

    def signal_group(self, sig: int) -> None:
        self.running = False


def demo_with(readiness: dict[str, int | None]) -> tuple[Demo, list[str]]:
    demo = Demo(port=0)
    log: list[str] = []
    demo.parts = [
        FakePart(name, [], "", polls_until_ready=readiness[name], log=log)
        for name in ("upstream", "proxy", "app")
    ]
    return demo, log


def test_the_app_starts_after_the_upstream_and_the_proxy_answer() -> None:
    demo, log = demo_with({"upstream": 1, "proxy": 3, "app": 0})
    demo.start(threading.Event(), timeout=10)
    assert log.index("start app") > log.index("ready proxy")
    assert log.index("start app") > log.index("ready upstream")
    assert log[-2:] == ["start app", "ready app"]


def test_a_proxy_that_never_answers_keeps_the_app_from_starting() -> None:
    demo, log = demo_with({"upstream": 0, "proxy": None, "app": 0})
    with pytest.raises(DemoError, match="not ready within 0.3s: proxy$"):
        demo.start(threading.Event(), timeout=0.3)
    assert "start app" not in log
    assert not any(isinstance(p, FakePart) and p.running for p in demo.parts)  # all stopped
