"""The demo app's view of chaosproxy's control API, over the one control client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from chaosproxy.control.client import ControlClient, ControlUnreachable


class ProxyControl:
    """Reads and switches the proxy's scenario; never raises for an unreachable proxy.

    ``status()`` is cached for ``ttl`` seconds, so many dashboards polling the app cost
    the proxy one call per ``ttl``.
    """

    def __init__(
        self,
        admin_url: str,
        token: str | None = None,
        timeout: float = 1.0,
        ttl: float = 0.4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # loopback admin: never through an HTTP_PROXY
        self.client = ControlClient(admin_url, token, timeout=timeout, trust_env=False)
        self.admin_url = self.client.base
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def _call(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        """(status, JSON body) of one admin call; (502, error) when the proxy cannot answer."""
        try:
            return self.client.request(method, path, doc)
        except ControlUnreachable as exc:
            return 502, {
                "error": f"chaosproxy control API unreachable at {exc.base} ({exc.reason})"
            }

    def status(self) -> dict[str, Any]:
        """``{"admin_url", "reachable", "scenario", "description", "phase", "phases",
        "paused", "error"}``."""
        now = self.clock()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1]
        code, body = self._call("GET", "/scenario")
        info: dict[str, Any] = {
            "admin_url": self.admin_url,
            "reachable": code == 200,
            "scenario": None,
            "description": None,
            "phase": None,
            "phases": [],
            "paused": None,
            "error": None,
        }
        if code == 200 and isinstance(body, dict):
            info["scenario"] = body.get("name")
            info["description"] = body.get("description")
            phase = body.get("phase")
            info["phase"] = phase.get("name") if isinstance(phase, dict) else phase
            info["paused"] = body.get("paused")
            phases = body.get("phases") or []
            info["phases"] = [p.get("name") if isinstance(p, dict) else p for p in phases]
        else:
            info["error"] = body.get("error") if isinstance(body, dict) else str(body)
        with self._lock:
            self._cached = (now, info)
        return info

    def forget(self) -> None:
        with self._lock:
            self._cached = None

    def scenarios(self) -> tuple[int, Any]:
        return self._call("GET", "/scenarios")

    def apply(self, name: str) -> tuple[int, Any]:
        """Switch the proxy to the shipped scenario ``name``."""
        self.forget()
        return self._call("PUT", "/scenario", {"name": name})

    def jump(self, phase: str) -> tuple[int, Any]:
        self.forget()
        return self._call("POST", "/scenario/phase", {"phase": phase})
