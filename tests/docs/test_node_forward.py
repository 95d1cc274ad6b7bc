"""Forward mode with Node.js, as docs/forward-node.md says: node's built-in ``fetch``
ignores HTTP_PROXY (the request bypasses the proxy), undici's ``EnvHttpProxyAgent``
sends it through. The page's own script runs, against ``chaosproxy run --forward``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.examples import DOCS, named_files
from tests.support import free_port, require_tool, running_upstream, wait_until

pytestmark = pytest.mark.timeout(240)

#: undici is installed here once, never into the checkout (like the bench's toxy).
UNDICI_DIR = Path(os.environ.get("CHAOSPROXY_UNDICI_DIR", "/tmp/chaosproxy-docs-undici"))
BUILTIN_FETCH = """
const answer = await fetch(process.argv[2]);
await answer.arrayBuffer();
console.log(answer.status);
"""


def undici() -> Path:
    """node_modules holding undici (installed with npm on first use)."""
    require_tool("node")
    npm = require_tool("npm")
    modules = UNDICI_DIR / "node_modules"
    if not (modules / "undici" / "package.json").exists():
        UNDICI_DIR.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(UNDICI_DIR), "undici"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if out.returncode != 0:
            message = f"npm install undici failed: {out.stderr.strip()[-300:]}"
            if os.environ.get("CHAOSPROXY_REQUIRE_TOOLS"):
                pytest.fail(message)
            pytest.skip(message)
    return modules


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def forward_proxy(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``chaosproxy run --forward`` answering every request with 503: (proxy URL, admin URL)."""
    scenario = tmp_path / "all-503.yaml"
    scenario.write_text("name: all-503\nrules:\n  - fault: {type: error, status: 503}\n")
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "chaosproxy"),
            "run",
            "--forward",
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin}",
            "--scenario",
            str(scenario),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: listening(port) and listening(admin), timeout=30)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def requests_seen(admin: str) -> int:
    with urllib.request.urlopen(f"{admin}/stats", timeout=5) as answer:
        return int(json.load(answer)["requests"])


def node(script: Path, url: str, proxy: str) -> list[str]:
    env = {**os.environ, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    out = subprocess.run(
        [require_tool("node"), str(script), url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_builtin_fetch_bypasses_the_proxy_and_undici_goes_through(
    forward_proxy: tuple[str, str], tmp_path: Path
) -> None:
    modules = undici()
    proxy, admin = forward_proxy
    (tmp_path / "node_modules").symlink_to(modules)  # ESM imports ignore NODE_PATH
    script = tmp_path / "proxied-fetch.mjs"
    script.write_text(named_files(DOCS / "forward-node.md")["proxied-fetch.mjs"])
    builtin = tmp_path / "builtin-fetch.mjs"
    builtin.write_text(BUILTIN_FETCH)
    with running_upstream() as upstream:
        url = f"{upstream.url}/status/200"
        # node's own fetch with HTTP_PROXY set: straight to the upstream, the proxy sees nothing
        assert node(builtin, url, proxy) == ["200"]
        assert requests_seen(admin) == 0
        # the page's script with undici's EnvHttpProxyAgent: every request through the proxy
        assert node(script, url, proxy) == ["503"] * 5
        assert requests_seen(admin) == 5
        assert len(upstream.received) == 1  # only the bypassing request reached it
