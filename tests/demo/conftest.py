from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses as responses_lib
from flask import Flask
from flask.testing import FlaskClient

from chaosproxy.demo_app import create_app
from chaosproxy.demo_app.state import DemoState
from chaosproxy.demo_app.upstream import create_upstream
from tests.support import serving

#: the upstream and admin addresses of app fixtures whose HTTP calls `responses` answers
UPSTREAM = "http://weather.test"
ADMIN = "http://admin.test"


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[str]:
    """The real fake weather service on a free loopback port, for the session."""
    with serving(create_upstream()) as url:
        yield url


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Fresh demo apps (no sleeping between retries); their traffic is stopped afterwards."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        base: dict[str, Any] = {"TESTING": True, "UPSTREAM_URL": UPSTREAM, "PROXY_ADMIN_URL": ADMIN}
        base.update(config)
        app = create_app(base)
        demo(app).client.sleep = lambda seconds: None
        apps.append(app)
        return app

    yield make
    for app in apps:
        demo(app).traffic.stop()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def mocked() -> Iterator[responses_lib.RequestsMock]:
    """``responses`` at the HTTP layer: every call must be registered, and unused ones fail."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def demo(app: Flask) -> DemoState:
    state: DemoState = app.extensions["chaosdemo"]
    return state


class DemoProcess:
    """``chaosproxy demo --no-browser`` as a subprocess, its output collected line by line."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        import subprocess
        import sys

        from tests.support import free_port

        self.port = port or free_port()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chaosproxy.cli", "demo", "--no-browser",
             "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 90) -> DemoProcess:
        from tests.support import wait_until

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited {self.proc.returncode}:\n{self.output}")
            return "Ctrl-C stops everything." in self.lines

        wait_until(ready, timeout=timeout, interval=0.05)
        return self

    def url_of(self, name: str) -> str:
        for line in self.lines:
            label, _, url = line.strip().rpartition("  ")
            if label.strip() == name:
                return url.strip()
        raise AssertionError(f"no {name} URL in:\n{self.output}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


@pytest.fixture
def start_demo() -> Iterator[Callable[..., DemoProcess]]:
    started: list[DemoProcess] = []

    def start(*args: str, port: int | None = None) -> DemoProcess:
        process = DemoProcess(*args, port=port)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.stop()
