"""``chaosproxy validate`` on files it must not read whole (issue 22 item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # chaosproxy in subprocesses

# validate in a fresh interpreter that reports its own peak memory (KiB) on stderr
PROBE = (
    "import resource, sys\n"
    "from chaosproxy.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "sys.stderr.write(f'maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
    "sys.exit(code)\n"
)


def validate(*paths: str) -> tuple[subprocess.CompletedProcess[str], float, int]:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "validate", *paths],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rss = int(out.stderr.rsplit("maxrss=", 1)[1])
    return out, time.monotonic() - start, rss


def test_a_50_mb_file_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(50_000_000)
    out, seconds, rss_kib = validate(str(big))
    assert out.returncode == 1
    assert out.stdout.strip() == (
        f"{big}: file: too large: 50,000,000 bytes; a scenario is at most 1,000,000 bytes"
    )
    print(f"validate 50 MB: {seconds:.2f} s, peak RSS {rss_kib / 1024:.0f} MiB")
    assert seconds < 20  # the interpreter's start-up; reading it whole took > 300 s
    assert rss_kib < 200 * 1024  # 2.9 GB when read whole


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    out, _, _ = validate(str(fifo))
    assert out.returncode == 1
    assert out.stdout.strip() == f"{fifo}: file: not a regular file (a FIFO): give a scenario file"
