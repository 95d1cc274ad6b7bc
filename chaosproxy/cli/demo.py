"""``chaosproxy demo``: the workshop demo (fake upstream, proxy, demo app and dashboard)."""

from __future__ import annotations

import argparse
from typing import Any

from chaosproxy.cli.common import fail, load


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 for any free port)")
    return int(text)


def add_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the workshop demo: fake upstream, proxy and demo app with its dashboard",
        description="Start the fake weather upstream, the proxy and the demo app on loopback "
        "and open the live dashboard. Ctrl-C stops all of them.",
    )
    demo.add_argument("--no-browser", action="store_true", help="do not open the dashboard")
    demo.add_argument(
        "--port", type=_port, default=5000, help="the app and dashboard port (default 5000)"
    )
    demo.add_argument("--scenario", metavar="PATH|NAME", help="start on it (default: healthy)")
    for flag, what in (
        ("--upstream-port", "the fake upstream"),
        ("--proxy-port", "the proxy"),
        ("--admin-port", "the proxy's control API"),
    ):
        demo.add_argument(flag, type=_port, default=0, help=f"port of {what} (default: free)")
    demo.add_argument("-v", "--verbose", action="store_true", help="log every injected fault")
    demo.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from chaosproxy.demo_app.launcher import DemoError, run

    if args.scenario:
        load(args.scenario)  # a bad name or file: located errors, nothing started
    try:
        return run(
            port=args.port,
            scenario=args.scenario,
            browser=not args.no_browser,
            upstream_port=args.upstream_port,
            proxy_port=args.proxy_port,
            admin_port=args.admin_port,
            verbose=args.verbose,
        )
    except DemoError as exc:
        fail(f"demo: {exc}")
