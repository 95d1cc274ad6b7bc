"""The dashboard's "Assess" button: ``chaosproxy assess --quick`` against this app's client.

The demo app may only talk to chaosproxy through its control API, so the assessment runs
as a subprocess, ``python -m chaosproxy.cli assess``, with its own proxy on a free
loopback port in front of the real (fake) upstream. What it assesses is a second
:class:`WeatherClient` built like the app's own (the same settings, a fresh breaker and
cache), pointed at that proxy and reached through ``GET /assess/weather/<city>``: the
dashboard's traffic, charts and breaker are left alone. One run at a time; the last
one's report card (the command's output), JSON and HTML report are kept.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaosproxy.demo_app.weather import ClientSettings, WeatherClient, make_breaker

LOOPBACK = "127.0.0.1"
#: the city every assessment asks for
CITY = "berlin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Assessments:
    """Runs assessments of the app's client, one at a time, and keeps the last result."""

    upstream_url: str | None
    """The real upstream (the demo's fake weather service); None: assessing is off."""
    command: Sequence[str] = (sys.executable, "-m", "chaosproxy.cli", "assess")
    quick: bool = True
    seed: int = 1
    workdir: Path | None = None
    """Where the last run's JSON and HTML go (default: a temporary folder, made on the
    first run)."""
    port: Callable[[], int] = free_port
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._output: list[str] = []
        self.target: WeatherClient | None = None
        self._state: dict[str, Any] = {"state": "idle", "run": 0}

    def _folder(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="chaosdemo-"))
        return self.workdir

    @property
    def json_path(self) -> Path:
        return self._folder() / "assessment.json"

    @property
    def html_path(self) -> Path:
        return self._folder() / "assessment.html"

    def argv(self, trigger_url: str, port: int) -> list[str]:
        """The command line of one run."""
        assert self.upstream_url is not None
        argv = [*self.command, "--upstream", self.upstream_url]
        argv += ["--listen", f"{LOOPBACK}:{port}", "--trigger-url", trigger_url]
        argv += ["--seed", str(self.seed), "--json", str(self.json_path)]
        argv += ["--html", str(self.html_path)]
        return argv + (["--quick"] if self.quick else [])

    def start(
        self, app_url: str, settings: ClientSettings, fail_max: int, reset_timeout: float
    ) -> dict[str, Any]:
        """Start a run against ``app_url``'s assessment route; ValueError if one is running
        or assessing is off."""
        if self.upstream_url is None:
            raise ValueError(
                "assessing needs the upstream's URL: run the demo with chaosproxy demo"
            )
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                raise ValueError("an assessment is already running")
            port = self.port()
            self.target = WeatherClient(
                f"http://{LOOPBACK}:{port}",
                copy.copy(settings),
                breaker=make_breaker(fail_max, reset_timeout),
            )
            self.target.session.trust_env = False
            for stale in (self.json_path, self.html_path):
                stale.unlink(missing_ok=True)
            argv = self.argv(f"{app_url.rstrip('/')}/assess/weather/{CITY}", port)
            env = dict(os.environ, COLUMNS="110", NO_COLOR="1", PYTHONUNBUFFERED="1")
            self._output = []
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            run = self._state["run"] + 1
            self._state = {"state": "running", "run": run, "started": self.clock()}
            threading.Thread(target=self._follow, args=(self._proc, run), daemon=True).start()
        return self.status()

    def _follow(self, proc: subprocess.Popen[str], run: int) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                if self._state["run"] == run:
                    self._output.append(line)
        code = proc.wait()
        with self._lock:
            if self._state["run"] != run:
                return
            self._state.update(
                state="done" if code == 0 else "failed",
                exit_code=code,
                finished=self.clock(),
            )

    def status(self) -> dict[str, Any]:
        """``{"state": idle|running|done|failed, "run", "started", "finished", "exit_code",
        "output", "report", "enabled"}``."""
        with self._lock:
            state = dict(self._state)
            state["output"] = "".join(self._output)
        state["enabled"] = self.upstream_url is not None
        state["report"] = state["state"] == "done" and self.html_path.exists()
        return state

    def stop(self) -> None:
        """End a run in progress (the app is stopping)."""
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
