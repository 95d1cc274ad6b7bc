"""``chaosproxy explain``: which rule would fire for a request, and why the others do not,
against a scenario file or a running proxy."""

from __future__ import annotations

import argparse
from typing import Any

from chaosproxy.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    admin_client_options,
    ask,
    control,
    fail,
    load,
)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def add_parser(sub: Any) -> None:
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
    admin_client_options(explain, "used without --scenario")
    explain.add_argument(
        "-H", "--header", action="append", type=_header, default=[], metavar="'Name: value'"
    )
    explain.add_argument("-d", "--data", metavar="BODY", help="request body (for body matching)")
    explain.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    explain.add_argument("--phase", help="explain against this phase (default: the first)")
    explain.add_argument(
        "--upstream-name", metavar="NAME", help="the upstream NAME (multi-upstream mode)"
    )
    explain.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from chaosproxy.control.documents import explain_document, explain_request
    from chaosproxy.core.engine import Engine

    body = args.data.encode() if args.data is not None else b""
    try:
        request = explain_request(args.method, args.url, args.header, body, args.upstream_name)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if args.scenario:
        scenario, path = load(args.scenario)
        engine = Engine(scenario, seed=args.seed, source=str(path))
        if args.phase:
            try:
                engine.jump_to(args.phase)
            except KeyError as exc:
                fail(str(exc.args[0]), EXIT_USAGE)
        doc = explain_document(engine, request)
    else:  # against a running proxy: its scenario, phase, seed and counters as they are now
        if args.phase or args.seed is not None:
            fail("--phase and --seed go with --scenario (a running proxy has its own)", EXIT_USAGE)
        doc = ask(
            control(args).explain,
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
    asked = doc.get("asked")
    if asked and "faults" in asked:
        print(
            f"  ASKED X-Chaos-Fault [{asked['faults']}]: given instead of the rules, to a "
            "loopback client or one with X-Chaos-Token (request_faults: true)"
        )
        print("  the rules, for a client that may not ask:")
    elif asked:
        print(f"  X-Chaos-Fault ignored, the rules decide: {asked['ignored']}")
    if not verdicts:
        print("  no rules: the request passes through untouched")
    for v in verdicts:
        mark = "FIRES" if v["fires"] else "  -  "
        print(f"  {mark} {v['rule']} [{v['fault']}]: {v['reason']}")
    if not any(v["fires"] for v in verdicts):
        print("  => untouched: no rule fires")
    return EXIT_OK
