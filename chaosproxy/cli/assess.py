"""``chaosproxy assess``: learn a client's resilience policy from its traffic, and grade it.

    chaosproxy assess --upstream http://127.0.0.1:5001 --trigger-url http://127.0.0.1:5000/weather/berlin
    chaosproxy assess --upstream http://127.0.0.1:5001 -- ./call-once.sh

The proxy listens on ``--listen`` (default 127.0.0.1:8080) in front of ``--upstream``;
the app under test must send its upstream calls there. Exit 0, 1 when ``--expect``
finds the client short of the policy, 2 for usage errors (a bad policy file included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosproxy.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, fail

if TYPE_CHECKING:
    from rich.console import Console

    from chaosproxy.testing.assess.model import Assessment, Progress


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "assess",
        help="learn a client's resilience policy (retries, backoff, breaker...) and grade it",
        description=(
            "Put the proxy in front of --upstream, drive the app under test through a battery "
            "of failures (503s, Retry-After, 4xx, resets, a hang, a broken body, an outage), and "
            "infer its policy from the calls the proxy saw. Trigger one logical call with "
            "--trigger-url (an endpoint of the app that calls the upstream) or with a command "
            "after `--` (run once per call, with CHAOSPROXY_URL, HTTP_PROXY/HTTPS_PROXY and "
            "CHAOSPROXY_CA_CERT in its environment)."
        ),
    )
    p.add_argument("--upstream", metavar="URL", help="the real upstream the app calls")
    p.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        default="127.0.0.1:8080",
        help="where the proxy listens: point the app's upstream URL here (default 127.0.0.1:8080)",
    )
    p.add_argument(
        "--trigger-url", metavar="URL", help="an endpoint of the app that calls the upstream"
    )
    p.add_argument("--trigger-method", metavar="M", default="GET", help="its method (default GET)")
    p.add_argument("--trigger-body", metavar="B", help="its request body")
    p.add_argument(
        "--trigger-timeout",
        metavar="S",
        type=float,
        default=60.0,
        help="give up on one triggered call after S seconds (default 60)",
    )
    p.add_argument("--quick", action="store_true", help="no breaker, fewer samples (~20 s)")
    p.add_argument("--seed", type=int, default=1, help="seed of every experiment (default 1)")
    p.add_argument(
        "--hang-cap",
        metavar="S",
        type=float,
        default=10.0,
        help="the longest a hang is held: a client still waiting has no timeout (default 10)",
    )
    p.add_argument("--json", metavar="FILE", help="write the assessment as JSON")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument(
        "--expect",
        metavar="POLICY",
        help="a policy file (attempts: 2..4, breaker: required...): exit 1 on a miss",
    )
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of --json and exit")
    p.add_argument("command", nargs="*", help="after --: a command making one logical call")
    p.set_defaults(func=command)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        fail(f"--listen {text!r}: give PORT or HOST:PORT", EXIT_USAGE)
    return host or "127.0.0.1", int(port)


def _progress(console: Console) -> Any:
    card = _report_module("card")
    return _plain_progress(console) if card is None else card.live_progress(console)


def _plain_progress(console: Console) -> Any:
    def show(p: Progress) -> None:
        if p.done:
            console.print(f"  [green]done[/] {p.title} ({p.samples} samples)", highlight=False)
        elif p.sample == 1:
            console.print(f"  {p.title} ...", highlight=False)

    return show


def render(assessment: Assessment, console: Console, verdicts: Any = None) -> None:
    """The report card, with the ``--expect`` verdicts (a plain summary without card.py)."""
    card = _report_module("card")
    if card is None:
        plain_summary(assessment, console)
        for v in verdicts or ():
            if not v.ok:
                console.print(f"  MISS {v.message}", highlight=False)
    else:
        card.render(assessment, console, verdicts=verdicts)


def _report_module(name: str) -> Any:
    """``card`` or ``html`` of chaosproxy.testing.assess, or None before they exist."""
    import importlib

    try:
        return importlib.import_module(f"chaosproxy.testing.assess.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"chaosproxy.testing.assess.{name}":
            raise
        return None


def plain_summary(assessment: Assessment, console: Console) -> None:
    """One line per policy item, with what it rests on."""
    from chaosproxy.testing.assess.model import POLICY_ITEMS

    doc = assessment.to_json()
    quick = ", quick" if assessment.quick else ""
    console.print(
        f"[bold]Resilience policy[/] of {assessment.target.url or assessment.target.command} "
        f"(seed {assessment.seed}, {assessment.duration_s:.1f}s{quick})",
        highlight=False,
    )
    for item in POLICY_ITEMS:
        value = doc["policy"].get(item)
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
        ev = assessment.evidence.get(item)
        why = f"  [dim]({ev.confidence}; {ev.note})[/]" if ev else ""
        shown = "-" if value is None else str(value)
        console.print(f"  {item:<24} {shown}{why}", highlight=False)


def command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from chaosproxy.testing.assess.model import json_schema

    if args.schema:
        sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
        return EXIT_OK
    if not args.upstream:
        fail("give --upstream URL (the real upstream the app calls)", EXIT_USAGE)
    if bool(args.trigger_url) == bool(args.command):
        fail("give either --trigger-url URL or a command after --", EXIT_USAGE)
    policy = None
    if args.expect:
        from chaosproxy.testing.assess import expect

        try:
            policy = expect.load(args.expect)
        except expect.PolicyError as exc:
            for line in exc.lines:
                print(line, file=sys.stderr)
            return EXIT_USAGE
    host, port = _listen(args.listen)
    console = Console(stderr=True, width=_width(sys.stderr))
    out = Console(width=_width(sys.stdout))
    assessment = _run(args, host, port, console)
    checked = None
    if policy is not None:
        from chaosproxy.testing.assess import expect

        checked = expect.verdicts(policy, assessment)
    render(assessment, out, checked)
    if args.json:
        Path(args.json).write_text(json.dumps(assessment.to_json(), indent=2) + "\n")
        console.print(f"JSON: {args.json}", highlight=False)
    if args.html:
        html = _report_module("html")
        if html is None:
            fail("--html: the HTML report is not part of this build yet", EXIT_USAGE)
        html.write(assessment, Path(args.html), verdicts=checked)
        console.print(f"HTML report: {args.html}", highlight=False)
    if checked is not None:
        misses = [v for v in checked if not v.ok]
        if misses:
            out.print(
                f"[red]{args.expect}: {len(misses)} of {len(checked)} expectations missed[/]",
                highlight=False,
            )
            return EXIT_FAIL
        out.print(f"[green]{args.expect}: all {len(checked)} expectations met[/]", highlight=False)
    return EXIT_OK


#: the width of the card off a terminal: its tables fit, a URL keeps its line (Rich's 80 did not)
PLAIN_WIDTH = 100


def _width(stream: Any) -> int | None:
    """None (Rich's choice: the terminal's width, or COLUMNS) on a terminal or when COLUMNS
    is set; otherwise PLAIN_WIDTH, so that a CI log shows the card as the docs do."""
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or os.environ.get("COLUMNS"):
        return None
    return PLAIN_WIDTH


def _run(args: argparse.Namespace, host: str, port: int, console: Console) -> Assessment:
    from chaosproxy.proxy_addons.runner import StartupError
    from chaosproxy.testing.api import ChaosProxy
    from chaosproxy.testing.assess.runner import AssessError, CommandTrigger, UrlTrigger, assess

    forward = bool(args.command)
    try:
        if forward:
            # a forward listener too (HTTP_PROXY); the reverse one keeps its own port
            confdir = os.path.expanduser("~/.mitmproxy")
            proxy = ChaosProxy(
                upstream=[f"app={args.upstream}@{port}"],
                forward=True,
                host=host,
                port=0,
                confdir=confdir,
            )
        else:
            proxy = ChaosProxy(upstream=args.upstream, host=host, port=port)
        proxy.start()
    except (ValueError, StartupError) as exc:
        fail(f"cannot start the proxy: {exc}", EXIT_USAGE)
    try:
        reverse = f"http://{host}:{port}"
        console.print(
            f"chaosproxy assess: proxy on [bold]{reverse}[/] -> {args.upstream}\n"
            f"  the app under test must call {reverse} instead of {args.upstream}",
            highlight=False,
        )
        self_hops: frozenset[str] = frozenset()
        if forward:
            fwd = proxy.url
            ca = os.path.join(os.path.expanduser("~/.mitmproxy"), "mitmproxy-ca-cert.pem")
            env = {
                "CHAOSPROXY_URL": reverse,
                "HTTP_PROXY": fwd,
                "HTTPS_PROXY": fwd,
                "http_proxy": fwd,
                "https_proxy": fwd,
                "CHAOSPROXY_CA_CERT": ca,
                "REQUESTS_CA_BUNDLE": ca,
                "CURL_CA_BUNDLE": ca,
                "NODE_EXTRA_CA_CERTS": ca,
            }
            trigger: Any = CommandTrigger(
                args.command, env, timeout=args.trigger_timeout, method=args.trigger_method
            )
            self_hops = frozenset({f"{host}:{port}", f"localhost:{port}"})
            console.print(f"  (forward proxy for HTTP_PROXY: {fwd})", highlight=False)
        else:
            trigger = UrlTrigger(
                args.trigger_url, args.trigger_method, args.trigger_body, args.trigger_timeout
            )
        progress = _progress(console)
        try:
            return assess(
                proxy,
                trigger,
                upstream=args.upstream,
                quick=args.quick,
                seed=args.seed,
                on_progress=progress,
                hang_cap_s=args.hang_cap,
                self_hops=self_hops,
                proxy_url=reverse,
            )
        except AssessError as exc:
            fail(str(exc))
        finally:
            close = getattr(progress, "close", None)
            if close is not None:
                close()
    finally:
        proxy.stop()
