"""``chaosproxy validate``: check scenario files, each error located (file:line:col: field)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chaosproxy.cli.common import EXIT_FAIL, EXIT_OK, print_scenario_error
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.scenario import ScenarioError


def add_parser(sub: Any) -> None:
    validate = sub.add_parser("validate", help="check scenario files")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or names")
    validate.set_defaults(func=command)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def command(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for spec in args.paths:
        try:
            scenario, path = scenario_mod.resolve(spec)
        except ScenarioError as exc:
            print_scenario_error(exc, sys.stdout)
            status = EXIT_FAIL
            continue
        rules = sum(1 for _ in scenario.all_rules())
        shape = _count(rules, "rule")
        if scenario.phases:
            shape = f"{_count(len(scenario.phases), 'phase')}, {shape}"
        print(f"{path}: ok ({scenario.label}: {shape})")
    return status
