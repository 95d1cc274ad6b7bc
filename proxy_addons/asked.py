"""Faults a request asks for itself (``request_faults: true``): the addon's side.

With the active scenario's ``request_faults: true``, a request with an ``X-Chaos-Fault``
header (grammar: :mod:`chaosproxy.core.asked`) gets those faults instead of the rules,
when it comes from a loopback client or carries the admin token in ``X-Chaos-Token``.
Both headers are removed before the request goes upstream. A header that cannot be
honoured (bad value, or a client that may not ask) is ignored: the request goes on to the
rules as if it had none, the ignored ask is counted (metric
``chaosproxy_request_faults_ignored_total{reason}``) and said in a warning (at most one
line a minute, with the count). Without ``request_faults`` the headers pass untouched.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from chaosproxy.core.asked import HEADER, TOKEN_HEADER, AskError, parse
from chaosproxy.core.engine import Decision, Engine
from chaosproxy.core.metrics import Metrics
from chaosproxy.core.scenario import Rule

logger = logging.getLogger("chaosproxy")

#: At most one warning line per this many seconds (a client cannot flood the log).
WARN_EVERY = 60.0


def is_loopback(peer: Any) -> bool:
    """Whether a client address (mitmproxy's ``peername``) is on loopback."""
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except (ValueError, TypeError, IndexError):
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class AskedFaults:
    """Turns an allowed ``X-Chaos-Fault`` header into a decision for that request."""

    def __init__(self, engine: Engine, token: Callable[[], str | None], metrics: Metrics) -> None:
        self._engine = engine
        self._token = token
        self._metrics = metrics
        self._warned_at: float | None = None
        self._since_warning = 0

    def asks(self, flow: http.HTTPFlow) -> bool:
        """The request carries the header and the scenario honours it (decide it whole)."""
        return self._engine.scenario.request_faults and HEADER in flow.request.headers

    def decide(self, flow: http.HTTPFlow) -> Decision | None:
        """The decision the request asked for; None: it asked for none, or its ask is
        ignored (the rules decide). Removes both headers when ``request_faults`` is on."""
        engine = self._engine
        if not engine.scenario.request_faults:
            return None
        headers = flow.request.headers
        values = headers.get_all(HEADER)
        token = headers.get(TOKEN_HEADER)
        for name in (HEADER, TOKEN_HEADER):
            if name in headers:
                del headers[name]
        if not values or engine.paused:
            return None
        if not self._may_ask(flow, token):
            self._ignore(
                "not_allowed",
                f"{HEADER} from {flow.client_conn.peername[0]} ignored: only loopback clients, "
                f"or requests with {TOKEN_HEADER} set to the admin token, may ask for faults",
            )
            return None
        value = "; ".join(values)
        try:
            faults = parse(value)
        except AskError as exc:
            self._ignore("invalid", f"{HEADER}: {value[:120]!r} ignored: {exc}")
            return None
        n = engine.count_asked()
        rule = Rule(name=HEADER, fault=faults)
        return Decision(rule, engine.phase, n, engine.seed)

    def _may_ask(self, flow: http.HTTPFlow, token: str | None) -> bool:
        if is_loopback(flow.client_conn.peername):
            return True
        expected = self._token()
        return bool(expected and token and hmac.compare_digest(token, expected))

    def _ignore(self, reason: str, message: str) -> None:
        self._metrics.asks_ignored[reason] += 1
        self._since_warning += 1
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
            return
        count, self._since_warning, self._warned_at = self._since_warning, 0, now
        more = f" ({count} ignored since the last such line)" if count > 1 else ""
        logger.warning("%s%s", message, more)
