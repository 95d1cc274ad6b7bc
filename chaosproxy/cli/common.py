"""What the subcommands share: exit codes, messages, scenario loading, the control API."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, TextIO

from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.scenario import ScenarioError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def version_text() -> str:
    from mitmproxy.version import VERSION as MITM

    try:
        ours = metadata.version("chaosproxy")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        ours = "unknown"
    return f"chaosproxy {ours} (mitmproxy {MITM}, Python {platform.python_version()})"


def fail(message: str, code: int = EXIT_FAIL) -> NoReturn:
    """Print ``chaosproxy: message`` on stderr and exit with ``code``."""
    print(f"chaosproxy: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_scenario_error(exc: ScenarioError, out: TextIO | None = None) -> None:
    """The located problems, one a line (on stderr unless told)."""
    for line in exc.lines:
        print(line, file=out or sys.stderr)


def load(spec: str, directories: Sequence[Path] = ()) -> tuple[scenario_mod.Scenario, Path]:
    """The scenario a file or shipped name gives; its located errors and exit 1 if bad."""
    try:
        return scenario_mod.resolve(spec, directories)
    except ScenarioError as exc:
        print_scenario_error(exc)
        raise SystemExit(EXIT_FAIL) from None


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ``chaosproxy: ...`` and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        fail(message, EXIT_USAGE)


# --------------------------------------------------------------- a running proxy's control API


def admin_client_options(parser: argparse.ArgumentParser, when: str = "") -> None:
    """--admin URL and --admin-token for commands that call a running proxy."""
    parser.add_argument(
        "--admin",
        default="http://127.0.0.1:8475",
        metavar="URL",
        help=f"the running proxy's control API (default http://127.0.0.1:8475){when and '; '}"
        f"{when}",
    )
    parser.add_argument(
        "--admin-token", metavar="T", help="its token (default $CHAOSPROXY_ADMIN_TOKEN)"
    )


def admin_token(args: argparse.Namespace) -> str | None:
    """--admin-token, else $CHAOSPROXY_ADMIN_TOKEN, else None."""
    from chaosproxy.control.server import TOKEN_ENV

    return args.admin_token or os.environ.get(TOKEN_ENV) or None


def control(args: argparse.Namespace) -> Any:
    """The control client (a ControlClient) of --admin, with --admin-token or
    $CHAOSPROXY_ADMIN_TOKEN."""
    from chaosproxy.control.client import ControlClient

    return ControlClient(args.admin, admin_token(args))


def ask(call: Any, *args: Any) -> Any:
    """Call the control API (a ControlClient method); exit with a clear message when it
    cannot answer."""
    from chaosproxy.control.client import ControlError, ControlUnreachable

    try:
        return call(*args)
    except ControlUnreachable as exc:
        fail(f"{exc}: is `chaosproxy run` running? give its address with --admin")
    except ControlError as exc:
        fail(str(exc))
