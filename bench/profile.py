"""``python -m bench.profile`` (``make bench-profile``): where a passthrough request's time goes.

Starts the upstream and ``chaosproxy run`` with the 20-rule passthrough scenario, loads it
at c=32 and samples the proxy with py-spy (the bench extra installs it). Prints the
functions with the most samples, inclusive and self, grouped as ours / mitmproxy /
asyncio / other, and writes the raw stacks (bench/results/profile.txt, one stack and its
count per line; ``flamegraph.pl`` or speedscope draw them). py-spy samples without
pausing the proxy, so some stacks come cut short: inclusive shares are lower bounds.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from bench import load, targets
from bench.procs import free_port
from bench.upstream import Upstream
from chaosproxy.proxy_addons._internals import NO_LEAN_ENV

RESULTS = Path(__file__).resolve().parent / "results"


def _where(frame: str) -> str:
    if "chaosproxy" in frame or "proxy_addons" in frame:
        return "chaosproxy"
    if "mitmproxy" in frame:
        return "mitmproxy"
    if "asyncio" in frame:
        return "asyncio"
    return "other"


def summarize(collapsed: str, top: int = 25) -> str:
    """Inclusive and self sample counts per function from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        groups[_where(frames[-1])] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples; self time by origin:"]
    lines += [f"  {name:<11} {n / total:6.1%}" for name, n in groups.most_common()]
    lines.append(f"top {top} inclusive (lower bounds: some sampled stacks are cut short):")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    lines.append(f"top {top} self:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load (10)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    p.add_argument("--scenario", default="passthrough-20", help="a scenario in bench/scenarios")
    p.add_argument(
        "--no-lean", action="store_true", help="without the lean start (CHAOSPROXY_NO_LEAN)"
    )
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for profile.txt")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    use_wrk = load.have_wrk()
    env = {NO_LEAN_ENV: "1"} if args.no_lean else None
    with Upstream(free_port(), free_port()) as up:
        with targets.chaosproxy(up.url, args.scenario, env=env) as proxy:
            assert proxy.proc is not None
            load.run_asyncio(proxy.url + "/bench", 8, count=500)
            result: list[load.Result] = []
            worker = threading.Thread(
                target=lambda: result.append(
                    load.run(
                        proxy.url + "/bench", args.connections, args.duration + 1, use_wrk=use_wrk
                    )
                )
            )
            worker.start()
            stem = args.out / "profile"
            cmd = [
                spy,
                "record",
                "--pid",
                str(proxy.proc.pid),
                "--duration",
                str(round(args.duration)),
                "--rate",
                str(args.rate),
            ]
            raw = subprocess.run(
                [*cmd, "--format", "raw", "--output", f"{stem}.txt", "--nonblocking"],
                capture_output=True,
                text=True,
                check=False,
            )
            worker.join()
    if raw.returncode != 0:
        print(f"py-spy failed: {raw.stderr}", file=sys.stderr)
        return 1
    print(f"load: {result[0].rps:,.0f} req/s at c={args.connections} ({result[0].tool})")
    print(summarize(Path(f"{stem}.txt").read_text()))
    print(f"collapsed stacks: {stem}.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
