"""docs/deploy.md's "Try it on one machine", followed as written: the page's own commands
(the fake upstream, redis-server, three `chaosproxy run`, the curl loop, the cluster's
stats) run on free ports instead of the page's, and the page's claims hold: five
failures in all, three replicas, one PUT changes all three."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.cli.test_cli import EXE, listening
from tests.docs.examples import ROOT, Block, blocks, named_files
from tests.support import free_port, require_tool, wait_until

PAGE = ROOT / "docs" / "deploy.md"
HEADING = "### Try it on one machine"


def walkthrough() -> list[Block]:
    text = PAGE.read_text()
    start = text.count("\n", 0, text.index(HEADING)) + 1
    return [b for b in blocks(PAGE) if b.line > start and b.lang == "sh"]


@pytest.fixture
def ports() -> dict[str, str]:
    """The page's ports, each replaced by a free one."""
    text = "\n".join(b.text for b in walkthrough())
    return {port: str(free_port()) for port in sorted(set(re.findall(r"\b\d{4}\b", text)))}


def local(command: str, ports: dict[str, str]) -> str:
    """``command`` with the page's ports (every 4-digit number) replaced by free ones."""
    return re.sub(r"\b\d{4}\b", lambda m: ports[m.group(0)], command)


@pytest.fixture
def started(tmp_path: Path, ports: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    require_tool("redis-server")
    (tmp_path / "five.yaml").write_text(named_files(PAGE)["five.yaml"])
    lines = [line for b in walkthrough() for line in b.text.splitlines()]
    servers = [line for line in lines if line.startswith(("python -m", "redis-server"))]
    proxies = [line for line in lines if line.startswith("chaosproxy run")]
    assert len(servers) == 2 and len(proxies) == 3, lines
    procs: list[subprocess.Popen[str]] = []

    def start(line: str) -> None:
        argv = [local(arg, ports) for arg in shlex.split(line)]
        argv[0] = {"python": sys.executable, "chaosproxy": EXE}.get(argv[0], argv[0])
        procs.append(
            subprocess.Popen(
                argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )

    try:
        for line in servers:
            start(line)
        wait_until(lambda: all(listening(int(ports[p])) for p in ("5001", "6390")), timeout=20)
        start(proxies[0])  # the first shares its scenario; the others adopt it
        wait_until(lambda: listening(int(ports["8476"])), timeout=20)
        for line in proxies[1:]:
            start(line)
        admins = [ports[p] for p in ("8476", "8477", "8478")]
        wait_until(lambda: all(listening(int(p)) for p in admins), timeout=20)
        yield procs
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_three_proxies_and_one_redis_behave_as_one(
    started: list[subprocess.Popen[str]], ports: dict[str, str]
) -> None:
    require_tool("curl")
    loop, stats = [b for b in walkthrough() if "for i in" in b.text][0].text.rsplit("\n", 2)[:2]
    out = subprocess.run(
        ["bash", "-c", local(loop, ports)], capture_output=True, text=True, timeout=60
    )
    codes = [line.split()[1] for line in out.stdout.splitlines()]
    assert len(codes) == 12 and codes.count("503") == 5 and codes.count("200") == 7, out
    assert codes[:5] == ["503"] * 5  # times: 5 across the replicas, not per replica

    def cluster() -> dict:
        answer = subprocess.run(
            ["bash", "-c", local(stats.split("#")[0], ports)], capture_output=True, text=True
        )
        return dict(json.loads(answer.stdout))

    assert stats.split("#")[1].strip() == '"replicas": 3, "injected": 5'
    wait_until(lambda: cluster()["requests"] == 12, timeout=5, interval=0.1)
    doc = cluster()
    assert (doc["replicas"], doc["injected"]) == (3, 5)
    # a PUT on one proxy changes all three
    [put] = [line for b in walkthrough() for line in b.text.splitlines() if "-X PUT" in line]
    command = local(put, ports)
    subprocess.run(["bash", "-c", command + " -s -o /dev/null"], check=True, timeout=30)
    names = lambda: [  # noqa: E731
        requests.get(f"http://127.0.0.1:{ports[p]}/scenario", timeout=5).json()["name"]
        for p in ("8476", "8477", "8478")
    ]
    wait_until(lambda: names() == ["outage"] * 3, timeout=2, interval=0.02)
