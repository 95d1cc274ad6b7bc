"""``chaosproxy run``: the proxy, reverse (--upstream) or forward (--forward)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from chaosproxy.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, fail, load, version_text
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.timeouts import DEFAULT_CONNECT, DEFAULT_READ, Timeouts
from chaosproxy.proxy_addons import _internals, logs
from chaosproxy.state import STATE_ENV, StateError


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


def _state(text: str) -> str:
    from chaosproxy.state import StateError, parse_url

    try:
        parse_url(text)
    except StateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _timeouts(text: str) -> Timeouts:
    try:
        return Timeouts.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any) -> None:
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
    run.add_argument(
        "--state",
        type=_state,
        default=None,
        metavar="memory|redis://HOST:PORT/DB",
        help="where counters, rate windows, the phase clock and the scenario live: in this "
        "process (memory, the default) or in Redis, shared by every replica given the same "
        "URL (default $CHAOSPROXY_STATE)",
    )
    run.add_argument(
        "--upstream-timeout",
        type=_timeouts,
        default=Timeouts(),
        metavar="DURATION|connect=D,read=D|off",
        help=f"give up on an upstream that does not accept a connection or send its "
        f"answer's head in time, answering 504 (default connect={DEFAULT_CONNECT:g}s,"
        f"read={DEFAULT_READ:g}s; one DURATION sets both)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="also log the mitmproxy patches in force"
    )
    run.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    logs.configure(args.log_format, quiet=args.quiet)
    _internals.lean_start()  # mitmproxy's lean patches, before anything imports mitmproxy
    from chaosproxy.proxy_addons.chaos import ChaosAddon
    from chaosproxy.proxy_addons.runner import ProxySettings, StartupError, Upstream, serve, stop

    try:
        upstreams = [Upstream.parse(u) for u in args.upstream]
    except ValueError as exc:
        fail(f"--upstream: {exc}", EXIT_USAGE)
    unnamed = [u for u in upstreams if u.name is None]
    if len(unnamed) > 1 or (unnamed and args.forward):
        fail("--upstream URL listens on --listen; give others as NAME=URL@PORT", EXIT_USAGE)
    if not upstreams and not args.forward:
        fail(
            "give --upstream URL (reverse proxy) or --forward (for HTTP_PROXY clients)", EXIT_USAGE
        )
    listen_host, listen_port = args.listen
    if args.scenario:
        scenario, path = load(args.scenario)
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
        fail("--watch needs --scenario PATH: the file to watch", EXIT_USAGE)
    addon = ChaosAddon(
        scenario,
        source=source,
        seed=args.seed,
        admin=admin,
        admin_token=token,
        admin_required=admin_required,
    )
    addon.watch.path = source if args.watch else None
    state = args.state if args.state is not None else os.environ.get(STATE_ENV) or None
    try:
        addon.use_state(state)
    except StateError as exc:
        fail(f"{STATE_ENV}: {exc}", EXIT_USAGE)  # --state is checked as it is parsed
    addon.deadlines.timeouts = args.upstream_timeout
    if args.decision_log:
        try:
            addon.recorder.log_to(args.decision_log)
        except OSError as exc:
            fail(f"--decision-log: cannot write {args.decision_log}: {exc}")
    seed_from = (
        "--seed"
        if args.seed is not None
        else "the scenario"
        if scenario.seed is not None
        else "chosen at random; replay with --seed"
    )

    log = logging.getLogger("chaosproxy")

    def ready(m: Any) -> None:
        _internals.settle_heap()  # before the line that tells scripts the proxy is ready
        if args.verbose:
            off = _internals.failed()
            log.info(
                "mitmproxy patches: %s%s",
                ", ".join(_internals.in_force()) or "none",
                "".join(f" | off: {name} ({why})" for name, why in off.items()),
            )
        where = addon.engine.source or "no scenario: passing everything through"
        seed_said = seed_from
        if getattr(addon.state, "adopted", False):  # joined a cluster: its scenario and seed
            where, seed_said = f"{where}, from the shared state", "the shared state's"
        control = f"control API {addon.admin_url}" if addon.admin_url else "no control API"
        log.info(
            "%s | %s | scenario %s (%s) | seed %d (%s) | state %s | upstream timeout %s | %s%s",
            version_text(),
            settings.describe(),
            addon.engine.scenario.label,
            where,
            addon.engine.seed,
            seed_said,
            addon.state.describe,
            addon.deadlines.timeouts.describe(),
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
        if exc.in_use is not None:
            fail(_in_use_message(exc.in_use, args.listen, upstreams))
        fail(f"cannot start the proxy: {exc}")
    return EXIT_OK


def _in_use_message(address: tuple[str, int], listen: tuple[str, int], upstreams: Any) -> str:
    """Which option named the address that is already in use, and what to do."""
    host, port = address
    option = f"--listen {listen[0]}:{listen[1]}"
    for up in upstreams:
        if up.port is not None and up.port == port and up.port != listen[1]:
            option = f"--upstream {up.name}={up.url}@{up.port}"
    return (
        f"{option}: {host}:{port} is already in use (another proxy still running?); "
        "stop it or choose another port"
    )


#: How long a signalled proxy's event loop may go without answering before the process is
#: ended regardless (it is checked every half of this).
STOP_DEADLINE = 1.0
#: How long a signalled proxy whose event loop still answers may take to stop in all.
STOP_HARD_DEADLINE = 5.0


def _stop_deadline(
    loop: asyncio.AbstractEventLoop,
    hard: float | None = None,
    end: Callable[[int], object] = os._exit,
) -> threading.Thread:
    """End the process (``end(1)``, saying why) if a signalled proxy does not stop: its
    event loop does not answer within STOP_DEADLINE, or it still answers but the shutdown
    is not done after ``hard`` seconds (STOP_HARD_DEADLINE); a watchdog thread."""
    hard = STOP_HARD_DEADLINE if hard is None else hard

    def watch() -> None:
        started = time.monotonic()
        time.sleep(STOP_DEADLINE / 2)
        while True:
            alive = threading.Event()
            try:
                loop.call_soon_threadsafe(alive.set)
            except RuntimeError:  # the loop is closed: the process is on its way out
                return
            if not alive.wait(STOP_DEADLINE / 2):
                why = (
                    f"did not stop within {STOP_DEADLINE:g}s of the signal (the event loop is "
                    "not answering)"
                )
                break
            if time.monotonic() - started >= hard:
                why = (
                    f"still stopping {hard:g}s after the signal (the event loop answers, but "
                    "the shutdown has not finished)"
                )
                break
            time.sleep(0.05)
        sys.stderr.write(f"chaosproxy: {why}; exiting now\n")
        sys.stderr.flush()
        end(EXIT_FAIL)

    watchdog = threading.Thread(target=watch, name="chaosproxy-stop-deadline", daemon=True)
    watchdog.start()
    return watchdog


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
        fail(f"--admin: {exc}", EXIT_USAGE)
    return admin, True, token
