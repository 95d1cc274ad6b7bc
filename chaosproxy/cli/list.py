"""``chaosproxy list``: the shipped scenarios (or those in a folder), one line each."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chaosproxy.cli.common import EXIT_FAIL, EXIT_OK, fail
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.scenario import ScenarioError


def add_parser(sub: Any) -> None:
    lister = sub.add_parser("list", help="list shipped scenarios (or those in DIR)")
    lister.add_argument("dir", nargs="?", metavar="DIR")
    lister.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else None
    if directory is not None and not directory.is_dir():
        fail(f"{args.dir}: not a directory")
    entries = scenario_mod.shipped(directory)
    if not entries:
        print(f"no scenarios in {directory}")
        return EXIT_OK
    width = max(len(e.name) for e in entries)
    status = EXIT_OK
    for entry in entries:
        try:
            sc = entry.load()
        except ScenarioError as exc:
            print(f"{entry.name:<{width}}  (invalid: {exc.lines[0]})")
            status = EXIT_FAIL
            continue
        summary = " ".join(sc.description.split()) or "(no description)"
        if sc.phases:
            summary += f" [phases: {', '.join(p.name for p in sc.phases)}]"
        print(f"{entry.name:<{width}}  {summary}")
    return status
