"""The ``chaosproxy`` command: the parser, and ``main(argv)``, the entry point.

Each subcommand is one module of this package (run, validate, explain, list, stats, demo,
schema) with ``add_parser(subparsers)`` and ``command(args) -> exit code``; what they share
is in common.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from chaosproxy.cli import assess, demo, explain, run, schema, stats, validate
from chaosproxy.cli import list as list_
from chaosproxy.cli.common import EXIT_OK, EXIT_USAGE, Parser, fail, version_text

#: the subcommands, in the order ``chaosproxy --help`` lists them
COMMANDS = (run, validate, explain, list_, stats, demo, schema, assess)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="chaosproxy",
        description="A fault-injection proxy for resilience testing.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except SystemExit:
        raise
    except Exception as exc:  # never a traceback for the user; keep it for a bug report
        if os.environ.get("CHAOSPROXY_DEBUG"):
            raise
        fail(
            f"unexpected error: {type(exc).__name__}: {exc}\n"
            "  (this is a bug: rerun with CHAOSPROXY_DEBUG=1 for the traceback and report it)"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
