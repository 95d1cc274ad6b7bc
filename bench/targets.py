"""The proxies under test: how to start each one in front of the upstream, on a free port."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Proc, free_port, start, wait_healthy, wait_port

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
TOXY_DIR = Path("/tmp/chaosproxy-bench-toxy")


def _bin(name: str) -> list[str]:
    """A console script next to this Python (the project's venv), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return [found]


@functools.cache
def chaosproxy_help() -> str:
    cmd = [sys.executable, "-m", "chaosproxy.cli", "run", "--help"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def supports_workers() -> bool:
    return "--workers" in chaosproxy_help()


@dataclass
class Target:
    """A proxy started for one measurement; ``url`` is where clients send requests."""

    name: str
    proc: Proc | None
    port: int
    started: float
    ready_after: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _launch(name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> Target:
    t0 = time.monotonic()
    proc = start(name, cmd, env)
    target = Target(name, proc, port, t0)
    try:
        target.ready_after = wait_port(port, proc=proc)
    except RuntimeError:
        proc.stop()
        raise
    return target


def chaosproxy(
    upstream: str,
    scenario: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    state: str | None = None,
    name: str | None = None,
) -> Target:
    """``chaosproxy run`` as users start it (the console script's entry point); ``state``:
    its ``--state`` (e.g. ``redis://127.0.0.1:PORT/0``)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "chaosproxy.cli",
        "run",
        "--upstream",
        upstream,
        "--listen",
        f"127.0.0.1:{port}",
        "--scenario",
        str(SCENARIOS / f"{scenario}.yaml"),
        "-q",
    ]
    admin = None
    if "--admin" in chaosproxy_help():
        admin = f"127.0.0.1:{free_port()}"
        cmd += ["--admin", admin]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if state is not None:
        cmd += ["--state", state]
    if name is None:
        name = "chaosproxy" if workers == 1 else f"chaosproxy --workers {workers}"
    target = _launch(name, cmd, port, env)
    if admin is not None:
        target.extra["admin"] = admin
        try:
            wait_healthy(f"http://{admin}/healthz", proc=target.proc)
        except RuntimeError:
            target.stop()
            raise
    return target


def mitmdump(upstream: str, *, script: str | None = None) -> Target:
    """Plain mitmdump in reverse mode: its defaults, the same mitmproxy as chaosproxy."""
    port = free_port()
    cmd = [*_bin("mitmdump"), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1"]
    cmd += ["--listen-port", str(port), "-q"]
    if script:
        cmd += ["-s", str(HERE / script)]
    return _launch("mitmdump" if not script else "mitmdump + sleep addon", cmd, port)


def redis_server() -> Target:
    """A redis-server of its own on a free loopback port, in memory only (for --state)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make sysdeps installs it)")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return _launch("redis-server", cmd, port)


def direct(url: str, name: str) -> Target:
    port = int(url.rsplit(":", 1)[1])
    return Target(name, None, port, time.monotonic())


# --------------------------------------------------------------------------- toxy (npm)


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def install_toxy(log: list[str]) -> bool:
    """Install toxy from npm into a cache directory outside the repository (once)."""
    if (TOXY_DIR / "node_modules" / "toxy").is_dir():
        return True
    TOXY_DIR.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(TOXY_DIR), "toxy"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        log.append(f"npm install toxy failed: {out.stderr.strip()[-500:]}")
        return False
    return True


def toxy(upstream: str, delay_ms: float) -> Target:
    """toxy as a reverse proxy: a latency poison of ``delay_ms`` on every request, or with 0,
    a poison that only hands the request on (toxy answers empty replies to requests no
    poison runs on)."""
    port = free_port()
    cmd = [*_bin("node"), str(HERE / "toxy_peer.js"), upstream, str(port), str(delay_ms)]
    name = f"toxy ({delay_ms:g} ms poison)" if delay_ms > 0 else "toxy (no-op poison)"
    return _launch(name, _with_node_path(cmd), port)


def _with_node_path(cmd: list[str]) -> list[str]:
    return ["env", f"NODE_PATH={TOXY_DIR / 'node_modules'}", *cmd]
