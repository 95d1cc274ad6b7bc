"""The addon's mitmproxy options (``--set chaos_scenario=...`` with ``mitmdump -s``).

``chaosproxy run`` passes the same settings to the addon's constructor instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from mitmproxy.exceptions import OptionsError

from chaosproxy.control.server import TOKEN_ENV, AdminConfigError, check_admin, parse_admin
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.engine import Engine
from chaosproxy.core.scenario import Scenario, ScenarioError, resolve
from chaosproxy.core.timeouts import Timeouts
from chaosproxy.proxy_addons.recorder import DecisionRecorder
from chaosproxy.proxy_addons.services import ControlService, WatchService
from chaosproxy.proxy_addons.upstream import UpstreamDeadlines

logger = logging.getLogger("chaosproxy")


def declare(loader: Any) -> None:
    """Add the ``chaos_*`` options (the addon's ``load`` hook)."""
    loader.add_option(
        "chaos_scenario",
        Optional[str],  # noqa: UP045 - mitmproxy compares option types to typing.Optional
        None,
        "Scenario file, or the name of a shipped scenario (e.g. flaky).",
    )
    loader.add_option(
        "chaos_seed",
        Optional[int],  # noqa: UP045
        None,
        "Seed for the scenario's random decisions; overrides the file's seed.",
    )
    loader.add_option(
        "chaos_admin",
        str,
        "",
        "Serve chaosproxy's control API on HOST:PORT (e.g. 127.0.0.1:8475); empty: off.",
    )
    loader.add_option(
        "chaos_admin_token",
        str,
        "",
        f"Bearer token the control API requires (needed beyond loopback); default ${TOKEN_ENV}.",
    )
    loader.add_option(
        "chaos_watch",
        bool,
        False,
        "Apply chaos_scenario again whenever its file changes (a broken edit is logged).",
    )
    loader.add_option(
        "chaos_state",
        str,
        "",
        "Where the scenario's state lives: empty or memory (this process), or "
        "redis://HOST:PORT/DB shared with other replicas; set at start.",
    )
    loader.add_option(
        "chaos_decision_log",
        str,
        "",
        "Append a JSON line per request (chaosproxy's decision log) to this file.",
    )
    loader.add_option(
        "chaos_upstream_timeout",
        str,
        "",
        "Upstream timeouts: DURATION (both), connect=D,read=D, or off; a 504 when one "
        "passes. Empty: connect 10s, read 60s.",
    )


def configure_services(
    updated: set[str],
    opts: Any,
    control: ControlService,
    watch: WatchService,
    recorder: DecisionRecorder,
    deadlines: UpstreamDeadlines | None = None,
) -> None:
    """The options for the control API, ``--watch``, the decision log and the upstream
    timeouts; empty values leave the addon's alone. A bad value raises OptionsError
    (mitmproxy rolls the update back)."""
    if "chaos_upstream_timeout" in updated and opts.chaos_upstream_timeout and deadlines:
        try:
            deadlines.timeouts = Timeouts.parse(opts.chaos_upstream_timeout)
        except ValueError as exc:
            raise OptionsError(f"chaos_upstream_timeout: {exc}") from None
    if updated & {"chaos_admin", "chaos_admin_token"}:
        address, token = control.address, control.token
        try:
            if "chaos_admin" in updated and opts.chaos_admin:
                address = parse_admin(opts.chaos_admin)
            token = opts.chaos_admin_token or os.environ.get(TOKEN_ENV) or None
            if address is not None:
                check_admin(address[0], token)
        except AdminConfigError as exc:
            raise OptionsError(f"chaos_admin: {exc}") from None
        control.address, control.token = address, token  # only once both are good
    if updated & {"chaos_watch", "chaos_scenario"} and opts.chaos_watch:
        if not opts.chaos_scenario:
            raise OptionsError("chaos_watch: set chaos_scenario to the file to watch")
        try:
            watch.path = str(scenario_mod.find(opts.chaos_scenario))
        except ScenarioError as exc:
            raise OptionsError(f"chaos_watch: {exc}") from None
    if "chaos_decision_log" in updated and opts.chaos_decision_log:
        try:
            recorder.log_to(opts.chaos_decision_log)
        except OSError as exc:
            raise OptionsError(f"chaos_decision_log: {exc}") from None


def configured_scenario(
    updated: set[str], opts: Any, engine: Engine, running: bool
) -> tuple[Scenario, str | None] | None:
    """The scenario (and its source) to apply after ``chaos_scenario`` / ``chaos_seed``
    changed, or None (nothing to apply). Sets ``engine``'s seed override from chaos_seed.

    A bad scenario on a ``running`` proxy raises OptionsError, so mitmproxy rolls the
    update back and the proxy keeps its scenario. At start-up it is logged instead:
    mitmproxy prints a script's exceptions with their traceback, and mitmdump refuses to
    start on an error logged during start-up.
    """
    if not updated & {"chaos_scenario", "chaos_seed"}:
        return None
    if "chaos_seed" in updated:
        engine.seed_override = opts.chaos_seed
    spec = opts.chaos_scenario
    if not spec:
        return (engine.scenario, engine.source) if "chaos_seed" in updated else None
    try:
        scenario, path = resolve(spec)
    except ScenarioError as exc:
        if running:
            raise OptionsError(f"Cannot load chaos_scenario {spec}:\n{exc}") from None
        logger.error(
            "cannot load chaos_scenario %s (keeping scenario %s):\n%s",
            spec,
            engine.scenario.label,
            exc,
        )
        return None
    return scenario, str(path)
