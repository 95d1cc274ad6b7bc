"""The :class:`ScenarioState` interface, and choosing a state from ``--state``."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from chaosproxy.core.engine import Decision, RequestView
from chaosproxy.core.units import parse_duration

#: The environment variable ``--state`` defaults to.
STATE_ENV = "CHAOSPROXY_STATE"

#: A decision now (None: untouched), or later.
Verdict = Decision | None | Awaitable[Decision | None]


class StateError(ValueError):
    """A ``--state`` value that cannot be used."""


class StateUnavailable(RuntimeError):
    """The shared state does not answer (``/stats?scope=cluster`` then says 503)."""


class ScenarioState(Protocol):
    """Where the stateful parts of a scenario live, and who decides against them."""

    @property
    def describe(self) -> str:
        """``memory``, or the store's URL (without a password)."""
        ...

    def decide_early(self, req: RequestView) -> tuple[bool, Decision | None]:
        """(True, decision) when the head is enough to decide now; (False, None) when the
        request must be read whole and :meth:`decide` asked."""
        ...

    def decide(self, req: RequestView) -> Verdict:
        """Select the rule that fires for ``req``, counting it; None: untouched."""
        ...

    async def start(self) -> None:
        """The proxy is about to serve (on its event loop)."""
        ...

    async def join(self) -> None:
        """The engine's clock started: share the scenario, or adopt the shared one."""
        ...

    def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """``/healthz``'s ``state`` part: ``{"backend", "status": ok|degraded, ...}``."""
        ...

    async def cluster_stats(self) -> dict[str, Any]:
        """``/stats?scope=cluster``: every replica's counts added up."""
        ...

    def metrics_text(self) -> str:
        """Prometheus lines about the state (fallbacks, degraded)."""
        ...


#: The longest a request waits for its decision from Redis, unless the URL says
#: ``?timeout=``: then it is decided with the replica's own state.
DEFAULT_TIMEOUT = 0.05
#: The longest ``?timeout=`` may be.
MAX_TIMEOUT = 5.0


@dataclass(frozen=True)
class RedisURL:
    """A parsed ``redis://[:PASSWORD@]HOST[:PORT][/DB][?timeout=DURATION]``."""

    url: str
    host: str
    port: int
    db: int
    timeout: float = DEFAULT_TIMEOUT

    @property
    def safe(self) -> str:
        """The URL without its password (for logs and documents)."""
        return f"redis://{self.host}:{self.port}/{self.db}"


def parse_url(text: str) -> RedisURL | None:
    """``memory`` (or empty: None) or ``redis://HOST[:PORT][/DB][?timeout=DURATION]``;
    StateError otherwise."""
    text = text.strip()
    if text in ("", "memory"):
        return None
    parts = urlsplit(text)
    if parts.scheme != "redis":
        raise StateError(f"{text!r}: give memory or redis://HOST:PORT/DB")
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise StateError(f"{text!r}: {exc}") from None
    if not parts.hostname:
        raise StateError(f"{text!r}: no host (e.g. redis://127.0.0.1:6379/0)")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise StateError(f"{text!r}: the database is a number (redis://HOST:PORT/0)")
    timeout = DEFAULT_TIMEOUT
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "timeout":
            raise StateError(f"{text!r}: unknown option {key!r} (only timeout=DURATION)")
        try:
            timeout = parse_duration(value)
        except ValueError as exc:
            raise StateError(f"{text!r}: timeout: {exc}") from None
        if not 0 < timeout <= MAX_TIMEOUT:
            raise StateError(f"{text!r}: timeout must be above 0 and at most {MAX_TIMEOUT:g}s")
    return RedisURL(text, parts.hostname, port, int(db_text), timeout)
