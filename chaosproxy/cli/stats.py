"""``chaosproxy stats``: a readable summary of a running proxy (rules, counters, the last
requests), or its raw JSON."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from chaosproxy.cli.common import EXIT_OK, admin_client_options, ask, control
from chaosproxy.core.units import counted


def add_parser(sub: Any) -> None:
    stats = sub.add_parser("stats", help="a readable summary from a running proxy")
    admin_client_options(stats)
    stats.add_argument(
        "--decisions",
        type=int,
        default=10,
        metavar="N",
        help="also list the last N requests (default 10; 0: none)",
    )
    stats.add_argument(
        "--cluster",
        action="store_true",
        help="every replica sharing the proxy's --state added up (/stats?scope=cluster)",
    )
    stats.add_argument("--json", action="store_true", help="print the raw JSON instead")
    stats.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    client = control(args)
    stats = ask(client.stats, args.cluster)
    decisions = ask(client.decisions, args.decisions) if args.decisions else []
    if args.json:
        print(json.dumps({"stats": stats, "decisions": decisions}, indent=2))
        return EXIT_OK
    console = Console(highlight=False)
    state = "paused (passing everything through)" if stats.get("paused") else "injecting"
    phase = f", phase {stats['phase']}" if stats.get("phase") else ""
    replicas = f" by {counted(stats['replicas'], 'replica')}" if "replicas" in stats else ""
    console.print(
        f"[bold]{stats['scenario']}[/bold]{phase}, seed {stats['seed']}, {state}: "
        f"{counted(stats['injected'], 'fault')} injected into "
        f"{counted(stats['requests'], 'request')}{replicas}"
    )
    table = Table(title=None, show_lines=False)
    table.add_column("rule")
    table.add_column("phase")
    table.add_column("fault")
    table.add_column("matched", justify="right")
    table.add_column("injected", justify="right")
    for rule in stats["rules"]:
        seen = str(rule["seen"]) if rule["seen"] else "[yellow]0 (never matched)[/yellow]"
        table.add_row(
            rule["name"], rule.get("phase") or "-", rule["fault"], seen, str(rule["injected"])
        )
    if stats["rules"]:
        console.print(table)
    else:
        console.print("no rules: every request passes through")
    if decisions:
        recent = Table(title=f"last {len(decisions)} requests")
        for column in ("time", "request", "rule", "outcome"):
            recent.add_column(column)
        for d in decisions:
            outcome = d["outcome"] if d["status"] is None else f"{d['outcome']} {d['status']}"
            recent.add_row(
                time.strftime("%H:%M:%S", time.localtime(d["time"])),
                f"{d['method']} {d['url']}",
                f"{d['rule']} [{d['fault']}]" if d["rule"] else "-",
                outcome,
            )
        console.print(recent)
    return EXIT_OK
