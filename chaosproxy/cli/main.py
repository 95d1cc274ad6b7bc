"""The ``chaosproxy`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, TextIO

from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.scenario import ScenarioError
from chaosproxy.proxy_addons import launch, logs

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def version_text() -> str:
    from mitmproxy.version import VERSION as MITM

    try:
        ours = metadata.version("chaosproxy")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        ours = "unknown"
    return f"chaosproxy {ours} (mitmproxy {MITM}, Python {platform.python_version()})"


def _fail(message: str, code: int = EXIT_FAIL) -> NoReturn:
    print(f"chaosproxy: {message}", file=sys.stderr)
    raise SystemExit(code)


def _print_scenario_error(exc: ScenarioError, out: TextIO = sys.stderr) -> None:
    for line in exc.lines:
        print(line, file=out)


def _host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers from 1 to 64")
    return int(text)


def _load(spec: str, directories: Sequence[Path] = ()) -> tuple[scenario_mod.Scenario, Path]:
    try:
        return scenario_mod.resolve(spec, directories)
    except ScenarioError as exc:
        _print_scenario_error(exc)
        raise SystemExit(EXIT_FAIL) from None


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from chaosproxy.proxy_addons.chaos import ChaosAddon
    from chaosproxy.proxy_addons.runner import ProxySettings, StartupError, Upstream, serve, stop

    try:
        upstreams = [Upstream.parse(u) for u in args.upstream]
    except ValueError as exc:
        _fail(f"--upstream: {exc}", EXIT_USAGE)
    unnamed = [u for u in upstreams if u.name is None]
    if len(unnamed) > 1 or (unnamed and args.forward):
        _fail("--upstream URL listens on --listen; give others as NAME=URL@PORT", EXIT_USAGE)
    if not upstreams and not args.forward:
        _fail(
            "give --upstream URL (reverse proxy) or --forward (for HTTP_PROXY clients)", EXIT_USAGE
        )
    listen_host, listen_port = args.listen
    if args.scenario:
        scenario, path = _load(args.scenario)
        source: str | None = str(path)
    else:
        scenario, source = scenario_mod.PASSTHROUGH, None
    settings = ProxySettings(
        upstreams=upstreams,
        forward=args.forward,
        listen_host=listen_host,
        listen_port=listen_port,
        insecure=args.insecure,
        confdir=args.confdir,
    )
    admin, admin_required, token = _admin_settings(args)
    if args.watch and source is None:
        _fail("--watch needs --scenario PATH: the file to watch", EXIT_USAGE)
    logs.configure(args.log_format, quiet=args.quiet)
    addon = ChaosAddon(
        scenario,
        source=source,
        seed=args.seed,
        admin=admin,
        admin_token=token,
        admin_required=admin_required,
    )
    addon.watch.path = source if args.watch else None
    if args.decision_log:
        try:
            addon.recorder.log_to(args.decision_log)
        except OSError as exc:
            _fail(f"--decision-log: cannot write {args.decision_log}: {exc}")
    seed_from = (
        "--seed"
        if args.seed is not None
        else "the scenario"
        if scenario.seed is not None
        else "chosen at random; replay with --seed"
    )

    import logging

    log = logging.getLogger("chaosproxy")

    def ready(m: Any) -> None:
        launch.settle_heap()  # before the line that tells scripts the proxy is ready
        where = source or "no scenario: passing everything through"
        control = f"control API {addon.admin_url}" if addon.admin_url else "no control API"
        log.info(
            "%s | %s | scenario %s (%s) | seed %d (%s) | %s%s",
            version_text(),
            settings.describe(),
            scenario.label,
            where,
            addon.engine.seed,
            seed_from,
            control,
            f" | watching {source}" if args.watch else "",
        )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        masters: list[Any] = []
        stopping: list[asyncio.Task[None]] = []
        signalled: list[int] = []

        def begin_stop() -> None:
            if masters:
                stopping.append(asyncio.ensure_future(stop(masters[0])))

        def on_signal(signum: int, frame: object) -> None:
            # A plain handler, not loop.add_signal_handler: it runs even when a task keeps
            # the event loop from ever getting back to its callbacks.
            if signalled or loop.is_closed():  # a second Ctrl-C: leave now
                os._exit(130)
            signalled.append(signum)
            loop.call_soon_threadsafe(begin_stop)
            _stop_deadline(loop)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        await serve(addon, settings, on_ready=ready, on_master=masters.append)

    if args.workers > 1:
        from chaosproxy.proxy_addons.workers import coordinate

        def run_workers() -> Any:
            return coordinate(
                addon, settings, args.workers, args.log_format, args.quiet, lambda: ready(None)
            )

        entry = run_workers
    else:
        entry = main
    try:
        asyncio.run(entry())
    except StartupError as exc:
        _fail(f"cannot start the proxy: {exc}")
    return EXIT_OK


#: How long a signalled proxy may take to stop before it is ended regardless.
STOP_DEADLINE = 1.0


def _stop_deadline(loop: asyncio.AbstractEventLoop, hard: float = 5.0) -> None:
    """Exit the process if the event loop stops answering after a stop signal: after
    STOP_DEADLINE with no answer, or after ``hard`` seconds in all (a watchdog thread)."""

    def watch() -> None:
        started = time.monotonic()
        time.sleep(STOP_DEADLINE / 2)
        while time.monotonic() - started < hard:
            alive = threading.Event()
            try:
                loop.call_soon_threadsafe(alive.set)
            except RuntimeError:  # the loop is closed: the process is on its way out
                return
            if not alive.wait(STOP_DEADLINE / 2):
                break
            time.sleep(0.05)
        sys.stderr.write(
            f"chaosproxy: did not stop within {STOP_DEADLINE:g}s of the signal (the event "
            "loop is not answering); exiting now\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_FAIL)

    threading.Thread(target=watch, name="chaosproxy-stop-deadline", daemon=True).start()


def _admin_settings(args: argparse.Namespace) -> tuple[tuple[str, int] | None, bool, str | None]:
    """(address or None, whether failing to bind it is fatal, token) from --admin and
    --admin-token (or $CHAOSPROXY_ADMIN_TOKEN). The default address only warns when it is
    taken (another chaosproxy may hold it); an explicit one that cannot be served stops."""
    from chaosproxy.control.server import DEFAULT_ADMIN, TOKEN_ENV, check_admin, parse_admin

    token = args.admin_token or os.environ.get(TOKEN_ENV) or None
    if args.admin is None:
        return DEFAULT_ADMIN, False, token
    try:
        admin = parse_admin(args.admin)
        if admin is not None:
            check_admin(admin[0], token)
    except ValueError as exc:
        _fail(f"--admin: {exc}", EXIT_USAGE)
    return admin, True, token


# ------------------------------------------------------------------ validate / list / schema


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for spec in args.paths:
        try:
            scenario, path = scenario_mod.resolve(spec)
        except ScenarioError as exc:
            _print_scenario_error(exc, sys.stdout)
            status = EXIT_FAIL
            continue
        rules = sum(1 for _ in scenario.all_rules())
        shape = _count(rules, "rule")
        if scenario.phases:
            shape = f"{_count(len(scenario.phases), 'phase')}, {shape}"
        print(f"{path}: ok ({scenario.label}: {shape})")
    return status


def cmd_list(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else None
    if directory is not None and not directory.is_dir():
        _fail(f"{args.dir}: not a directory")
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


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(scenario_mod.schema_text())
    return EXIT_OK


# --------------------------------------------------------------------------- explain


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def cmd_explain(args: argparse.Namespace) -> int:
    from chaosproxy.control.documents import explain_document, explain_request
    from chaosproxy.control.server import TOKEN_ENV
    from chaosproxy.core.engine import Engine

    body = args.data.encode() if args.data is not None else b""
    try:
        request = explain_request(args.method, args.url, args.header, body, args.upstream_name)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    if args.scenario:
        scenario, path = _load(args.scenario)
        engine = Engine(scenario, seed=args.seed, source=str(path))
        if args.phase:
            try:
                engine.jump_to(args.phase)
            except KeyError as exc:
                _fail(str(exc.args[0]), EXIT_USAGE)
        doc = explain_document(engine, request)
    else:  # against a running proxy: its scenario, phase, seed and counters as they are now
        if args.phase or args.seed is not None:
            _fail("--phase and --seed go with --scenario (a running proxy has its own)", EXIT_USAGE)
        token = args.admin_token or os.environ.get(TOKEN_ENV) or None
        doc = _ask(
            _control(args.admin, token).explain,
            {
                "method": request.method,
                "url": args.url,
                "headers": [list(h) for h in args.header],
                "body": args.data or "",
                "upstream": args.upstream_name,
            },
        )
    where = doc["source"] or "no file"
    if not args.scenario:
        where = f"running proxy, {where}"
    phase = f", phase {doc['phase']}" if doc["phase"] else ""
    seed = f"seed {doc['seed']}"
    print(f"{request.method} {args.url} against {doc['scenario']} ({where}{phase}, {seed}):")
    verdicts = doc["verdicts"]
    if not verdicts:
        print("  no rules: the request passes through untouched")
    for v in verdicts:
        mark = "FIRES" if v["fires"] else "  -  "
        print(f"  {mark} {v['rule']} [{v['fault']}]: {v['reason']}")
    if not any(v["fires"] for v in verdicts):
        print("  => untouched: no rule fires")
    return EXIT_OK


# --------------------------------------------------------------------------- stats


def _control(admin: str, token: str | None) -> Any:
    """The control client of ``--admin`` (a ControlClient)."""
    from chaosproxy.control.client import ControlClient

    return ControlClient(admin, token)


def _ask(call: Any, *args: Any) -> Any:
    """Call the control API (a ControlClient method); exit with a clear message when it
    cannot answer."""
    from chaosproxy.control.client import ControlError, ControlUnreachable

    try:
        return call(*args)
    except ControlUnreachable as exc:
        _fail(f"{exc}: is `chaosproxy run` running? give its address with --admin")
    except ControlError as exc:
        _fail(str(exc))


def cmd_stats(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from chaosproxy.control.server import TOKEN_ENV

    client = _control(args.admin, args.admin_token or os.environ.get(TOKEN_ENV) or None)
    stats = _ask(client.stats)
    decisions = _ask(client.decisions, args.decisions) if args.decisions else []
    if args.json:
        print(json.dumps({"stats": stats, "decisions": decisions}, indent=2))
        return EXIT_OK
    console = Console(highlight=False)
    state = "paused (passing everything through)" if stats.get("paused") else "injecting"
    phase = f", phase {stats['phase']}" if stats.get("phase") else ""
    console.print(
        f"[bold]{stats['scenario']}[/bold]{phase}, seed {stats['seed']}, {state}: "
        f"{stats['injected']} faults injected into {stats['requests']} requests"
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


# --------------------------------------------------------------------------- demo


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 for any free port)")
    return int(text)


def cmd_demo(args: argparse.Namespace) -> int:
    from chaosproxy.demo_app.launcher import DemoError, run

    if args.scenario:
        _load(args.scenario)  # a bad name or file: located errors, nothing started
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
        _fail(f"demo: {exc}")


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        _fail(message, EXIT_USAGE)


def _admin_client_options(parser: argparse.ArgumentParser, when: str = "") -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chaosproxy",
        description="A fault-injection proxy for resilience testing.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run the proxy",
        description="Run the chaos proxy: reverse (--upstream) or forward (--forward).",
    )
    run.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="URL|NAME=URL@PORT",
        help="reverse-proxy to URL on --listen; repeat as NAME=URL@PORT for more upstreams",
    )
    run.add_argument(
        "--forward",
        action="store_true",
        help="forward proxy for clients that honour HTTP_PROXY/HTTPS_PROXY",
    )
    run.add_argument("--scenario", metavar="PATH|NAME", help="scenario file or shipped name")
    run.add_argument(
        "--listen",
        type=_host_port,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="where the proxy listens (default 127.0.0.1:8080)",
    )
    run.add_argument("--seed", type=int, help="seed for random decisions (overrides the file's)")
    run.add_argument(
        "--insecure", action="store_true", help="do not verify upstream TLS certificates"
    )
    run.add_argument(
        "--confdir",
        metavar="DIR",
        help="mitmproxy's directory for its CA (default ~/.mitmproxy)",
    )
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines as text (default) or JSON",
    )
    run.add_argument(
        "--admin",
        metavar="HOST:PORT|off",
        help="control API address (default 127.0.0.1:8475; if that is taken the proxy "
        "runs without it); off: none",
    )
    run.add_argument(
        "--admin-token",
        metavar="T",
        help="require 'Authorization: Bearer T' on the control API (needed beyond "
        "loopback; default $CHAOSPROXY_ADMIN_TOKEN)",
    )
    run.add_argument(
        "--watch",
        action="store_true",
        help="apply the scenario file again whenever it changes (a broken edit is logged "
        "and the running scenario kept)",
    )
    run.add_argument(
        "--decision-log",
        metavar="PATH",
        help="append one JSON line per request (rule, fault, outcome) to PATH",
    )
    run.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="N proxy processes sharing the port (SO_REUSEPORT), one shared engine (default 1)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check scenario files")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or names")
    validate.set_defaults(func=cmd_validate)

    explain = sub.add_parser(
        "explain", help="which rule would fire for a request, and why the others do not"
    )
    explain.add_argument("method", metavar="METHOD")
    explain.add_argument("url", metavar="URL")
    explain.add_argument(
        "--scenario",
        metavar="PATH|NAME",
        help="explain against this scenario (default: ask the running proxy at --admin)",
    )
    _admin_client_options(explain, "used without --scenario")
    explain.add_argument(
        "-H", "--header", action="append", type=_header, default=[], metavar="'Name: value'"
    )
    explain.add_argument("-d", "--data", metavar="BODY", help="request body (for body matching)")
    explain.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    explain.add_argument("--phase", help="explain against this phase (default: the first)")
    explain.add_argument(
        "--upstream-name", metavar="NAME", help="the upstream NAME (multi-upstream mode)"
    )
    explain.set_defaults(func=cmd_explain)

    lister = sub.add_parser("list", help="list shipped scenarios (or those in DIR)")
    lister.add_argument("dir", nargs="?", metavar="DIR")
    lister.set_defaults(func=cmd_list)

    stats = sub.add_parser("stats", help="a readable summary from a running proxy")
    _admin_client_options(stats)
    stats.add_argument(
        "--decisions",
        type=int,
        default=10,
        metavar="N",
        help="also list the last N requests (default 10; 0: none)",
    )
    stats.add_argument("--json", action="store_true", help="print the raw JSON instead")
    stats.set_defaults(func=cmd_stats)

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
    demo.set_defaults(func=cmd_demo)

    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    schema.set_defaults(func=cmd_schema)
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
        _fail(
            f"unexpected error: {type(exc).__name__}: {exc}\n"
            "  (this is a bug: rerun with CHAOSPROXY_DEBUG=1 for the traceback and report it)"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
