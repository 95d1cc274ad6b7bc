"""Processes the benchmark starts: start, wait for a port, read RSS, stop (by PID only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 20.0, proc: Proc | None = None) -> float:
    """Wait until something accepts on ``port``; returns the seconds waited."""
    t0 = time.monotonic()
    while not port_open(port):
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}): {proc.log_tail()}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"nothing listens on port {port} after {timeout}s")
        time.sleep(0.005)
    return time.monotonic() - t0


def wait_healthy(url: str, timeout: float = 20.0, proc: Proc | None = None) -> None:
    """Wait until ``GET url`` answers 200: chaosproxy's ``/healthz`` says so only once every
    worker listens (the port opens with the first one, and a client that connects then
    would keep all its connections on that worker)."""
    t0 = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}): {proc.log_tail()}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{url} did not answer 200 after {timeout}s")
        time.sleep(0.01)


def held_requests(admin: str) -> int:
    """How many requests chaosproxy holds right now (``held`` in its control API's /stats)."""
    with urllib.request.urlopen(f"http://{admin}/stats", timeout=5) as answer:
        return int(json.load(answer)["held"])


def metric(admin: str, name: str) -> float | None:
    """One sample of chaosproxy's ``/metrics`` (None when it has none by that name)."""
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def wait_held(admin: str, n: int, timeout: float = 30.0) -> int:
    """Wait until chaosproxy holds at least ``n`` requests; how many it holds then (fewer
    only when ``timeout`` seconds passed first)."""
    t0 = time.monotonic()
    while True:
        held = held_requests(admin)
        if held >= n or time.monotonic() - t0 > timeout:
            return held
        time.sleep(0.05)


class Proc:
    """A child process whose output goes to a temporary log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.popen, self.log = name, popen, log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float:
        """Resident memory of the process and its children (workers), in MiB."""
        total = 0
        for pid in [self.pid, *_children(self.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process and its live children."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in [self.pid, *_children(self.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        try:
            self.log.unlink()
        except OSError:
            pass


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    out = []
    for child in text.split():
        out.append(int(child))
        out.extend(_children(int(child)))
    return out


def start(name: str, cmd: Sequence[str], env: dict[str, str] | None = None) -> Proc:
    fd, path = tempfile.mkstemp(prefix=f"chaosproxy-bench-{name}-", suffix=".log")
    full_env = {**os.environ, **(env or {})}
    with os.fdopen(fd, "wb") as log:
        popen = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=_repo_root()
        )
    return Proc(name, popen, Path(path))


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)
