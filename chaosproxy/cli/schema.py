"""``chaosproxy schema``: the JSON Schema of scenario files (scenarios/schema.json)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chaosproxy.cli.common import EXIT_OK
from chaosproxy.core import scenario as scenario_mod


def add_parser(sub: Any) -> None:
    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    schema.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    sys.stdout.write(scenario_mod.schema_text())
    return EXIT_OK
