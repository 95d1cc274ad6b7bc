"""``chaosproxy demo``: the fake upstream, the proxy and the demo app, supervised together.

Each runs as its own process in its own process group, on loopback; the app starts only
once the upstream and the proxy answer their health checks (else its first lookups would
fail against a proxy that is not listening yet, and be retried):

    upstream  python -m chaosproxy.demo_app.upstream          --port U
    proxy     python -m chaosproxy.cli run            --upstream http://127.0.0.1:U
                                                   --listen 127.0.0.1:P --admin 127.0.0.1:A
    app       python -m demo_app                   --port N --upstream http://127.0.0.1:P
                                                   --admin http://127.0.0.1:A
                                                   --assess-upstream http://127.0.0.1:U

(the app needs the real upstream only for its "Assess" button, which runs ``chaosproxy
assess --quick`` with a proxy of its own in front of it)

Ctrl-C, SIGTERM, or any one of them dying stops all three: SIGTERM to each process group,
SIGKILL for whatever is left after a grace period, so no process and no port outlives the
demo. On Linux the children also get SIGTERM if the launcher itself is killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import requests

LOOPBACK = "127.0.0.1"


class DemoError(Exception):
    """The demo cannot start or stopped because a part of it failed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def check_port(port: int, what: str) -> int:
    """``port`` if it can be bound on loopback (0: a free one), else DemoError naming the flag."""
    if port == 0:
        return free_port()
    with socket.socket() as s:
        # as the servers themselves do: a previous run's connections in TIME_WAIT are fine
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            s.listen()
        except OSError as exc:
            raise DemoError(f"{what} {port} is not free ({exc.strerror}); pick another") from None
    return port


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


@dataclass
class Part:
    """One supervised process and the URL that answers 200 once it serves."""

    name: str
    argv: list[str]
    ready_url: str
    quiet: bool = True
    #: also ready only when this (host, port) accepts a connection (the proxy's data port)
    listening: tuple[str, int] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if self.quiet else None,
            env=env,
            preexec_fn=_child_setup,
        )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def is_ready(self) -> bool:
        try:
            if requests.get(self.ready_url, timeout=0.5).status_code != 200:
                return False
        except requests.RequestException:
            return False
        if self.listening is None:
            return True
        try:
            socket.create_connection(self.listening, timeout=0.5).close()
        except OSError:
            return False
        return True

    def signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class Demo:
    """The three parts of the demo, with the ports they use."""

    port: int = 5000
    scenario: str | None = None
    upstream_port: int = 0
    proxy_port: int = 0
    admin_port: int = 0
    verbose: bool = False
    python: str = sys.executable
    parts: list[Part] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = check_port(self.port, "--port")
        self.upstream_port = check_port(self.upstream_port, "--upstream-port")
        self.proxy_port = check_port(self.proxy_port, "--proxy-port")
        self.admin_port = check_port(self.admin_port, "--admin-port")
        ports = [self.port, self.upstream_port, self.proxy_port, self.admin_port]
        if len(set(ports)) != len(ports):
            raise DemoError(f"the demo needs four different ports, got {ports}")
        upstream = f"http://{LOOPBACK}:{self.upstream_port}"
        proxy = f"http://{LOOPBACK}:{self.proxy_port}"
        admin = f"http://{LOOPBACK}:{self.admin_port}"
        proxy_argv = [
            self.python, "-m", "chaosproxy.cli", "run",
            "--upstream", upstream,
            "--listen", f"{LOOPBACK}:{self.proxy_port}",
            "--admin", f"{LOOPBACK}:{self.admin_port}",
        ]  # fmt: skip
        proxy_argv += ["--scenario", self.scenario or "healthy"]
        if not self.verbose:
            proxy_argv.append("--quiet")
        self.parts = [
            Part(
                "upstream",
                [
                    self.python,
                    "-m",
                    "chaosproxy.demo_app.upstream",
                    "--port",
                    str(self.upstream_port),
                ],  # fmt: skip
                f"{upstream}/healthz",
            ),
            Part(
                "proxy",
                proxy_argv,
                f"{admin}/healthz",
                quiet=False,
                listening=(LOOPBACK, self.proxy_port),
            ),
            Part(
                "app",
                [
                    self.python,
                    "-m",
                    "chaosproxy.demo_app",
                    "--port",
                    str(self.port),
                    "--upstream",
                    proxy,
                    "--admin",
                    admin,
                    "--assess-upstream",
                    upstream,
                ],
                f"{self.url}/healthz",
            ),  # fmt: skip
        ]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def urls(self) -> list[tuple[str, str]]:
        return [
            ("dashboard", f"{self.url}/"),
            ("app", f"{self.url}/weather/berlin"),
            ("proxy", f"http://{LOOPBACK}:{self.proxy_port}"),
            ("control API", f"http://{LOOPBACK}:{self.admin_port}"),
            ("upstream", f"http://{LOOPBACK}:{self.upstream_port}/v1/forecast/berlin"),
        ]

    # ------------------------------------------------------------------ lifecycle

    def stages(self) -> list[list[Part]]:
        """The parts in start order: the app (last) only once everything before it answers."""
        return [self.parts[:-1], self.parts[-1:]]

    def start(self, stopping: threading.Event, timeout: float = 60.0) -> None:
        """Start the parts stage by stage, each once the previous ones answer their health
        checks; DemoError (all stopped) if one exits or is not ready within ``timeout``."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        deadline = time.monotonic() + timeout
        started: list[Part] = []
        for stage in self.stages():
            for part in stage:
                part.start(env)
            started += stage
            waiting = list(stage)
            while waiting:
                if stopping.is_set():
                    return
                for part in started:
                    code = part.exited()
                    if code is not None:
                        self.stop()
                        raise DemoError(f"the {part.name} exited during startup (exit code {code})")
                for part in list(waiting):
                    if part.is_ready():
                        waiting.remove(part)
                if waiting and time.monotonic() > deadline:
                    self.stop()
                    names = ", ".join(p.name for p in waiting)
                    raise DemoError(f"not ready within {timeout:g}s: {names}")
                if waiting:
                    stopping.wait(0.05)

    def died(self) -> Part | None:
        return next((p for p in self.parts if p.exited() is not None), None)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM every process group, then SIGKILL what is left after ``grace`` seconds."""
        for part in reversed(self.parts):
            part.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for part in self.parts:
            if part.proc is None:
                continue
            try:
                part.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for part in self.parts:
            part.signal_group(signal.SIGKILL)  # the part and anything it started
            if part.proc is not None:
                part.proc.wait()


def open_browser(url: str, out: TextIO) -> None:
    """Open the dashboard, unless there is no display to open it on."""
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if headless:
        print("  (no display: open the dashboard URL in a browser yourself)", file=out)
        return
    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()


def run(
    port: int = 5000,
    scenario: str | None = None,
    *,
    browser: bool = True,
    upstream_port: int = 0,
    proxy_port: int = 0,
    admin_port: int = 0,
    verbose: bool = False,
    out: TextIO = sys.stdout,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
    on_ready: Callable[[Demo], None] | None = None,
) -> int:
    """Run the demo until a signal or a part's death; returns the exit code."""
    demo = Demo(
        port=port,
        scenario=scenario,
        upstream_port=upstream_port,
        proxy_port=proxy_port,
        admin_port=admin_port,
        verbose=verbose,
    )
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        print(
            f"chaosproxy demo: starting upstream, proxy (scenario {scenario or 'healthy'}) and app",
            file=out,
            flush=True,
        )
        demo.start(stopping)
        if not stopping.is_set():
            width = max(len(name) for name, _ in demo.urls())
            for name, url in demo.urls():
                print(f"  {name:<{width}}  {url}", file=out)
            print("Ctrl-C stops everything.", file=out, flush=True)
            if browser:
                open_browser(f"{demo.url}/", out)
            if on_ready is not None:
                on_ready(demo)
        dead: Part | None = None
        while not stopping.wait(0.1):
            dead = demo.died()
            if dead is not None:
                break
        started = time.monotonic()
        if dead is not None:
            print(
                f"chaosproxy demo: the {dead.name} exited (code {dead.exited()}); "
                "stopping the others",
                file=out,
                flush=True,
            )
        demo.stop()
        print(f"chaosproxy demo: stopped in {time.monotonic() - started:.2f}s", file=out)
        return 1 if dead is not None else 0
    except BaseException:
        demo.stop()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
