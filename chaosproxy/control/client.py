"""The one client of the control API, for the command line and the demo app.

``chaosproxy stats`` / ``explain`` and the demo dashboard talk to a running proxy's admin
address through :class:`ControlClient`: the base URL and token once, then one call per
endpoint. Trouble is an exception with a message a user can act on:
:class:`ControlUnreachable` (nothing answers) or :class:`ControlRefused` (an answer that
is not 200, with the API's own ``error``).
"""

from __future__ import annotations

import json
from typing import Any

import requests


class ControlError(Exception):
    """A control API call that did not succeed."""


class ControlUnreachable(ControlError):
    """Nothing (or nothing HTTP) answers at the admin address."""

    def __init__(self, base: str, reason: str) -> None:
        super().__init__(f"cannot reach the control API at {base} ({reason})")
        self.base = base
        self.reason = reason


class ControlRefused(ControlError):
    """The control API answered with a status other than 200."""

    def __init__(self, url: str, status: int, message: str, body: Any) -> None:
        super().__init__(f"{url} answered {status}: {message}")
        self.url = url
        self.status = status
        self.message = message
        self.body = body


def admin_base(text: str) -> str:
    """The base URL of an admin address given as ``HOST:PORT`` or a URL."""
    if "://" not in text:
        text = f"http://{text}"
    return text.rstrip("/")


class ControlClient:
    """Calls one proxy's control API (``base``: ``http://127.0.0.1:8475`` or ``HOST:PORT``).

    ``trust_env=False`` never goes through an ``HTTP_PROXY`` (a loopback admin address).
    """

    def __init__(
        self,
        base: str,
        token: str | None = None,
        *,
        timeout: float = 5.0,
        trust_env: bool = True,
    ) -> None:
        self.base = admin_base(base)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = trust_env
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        """(status, JSON body) of one call; a body that is not JSON becomes
        ``{"error": text}``. Raises ControlUnreachable."""
        try:
            response = self.session.request(
                method,
                f"{self.base}{path}",
                json=doc,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if isinstance(exc, requests.ConnectionError):
                reason = "nothing answers there"
            raise ControlUnreachable(self.base, reason) from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text.strip()[:500]}
        return response.status_code, body

    def call(self, method: str, path: str, doc: Any = None) -> Any:
        """The JSON answer of a call that succeeded (200); raises ControlError otherwise."""
        status, body = self.request(method, path, doc)
        if status != 200:
            message = body.get("error") if isinstance(body, dict) else None
            if not isinstance(message, str):
                message = json.dumps(body)
            raise ControlRefused(f"{self.base}{path}", status, message, body)
        return body

    # ------------------------------------------------------------------ endpoints

    def scenario(self) -> dict[str, Any]:
        """``GET /scenario``: the active scenario with phase, seed, source, paused."""
        result: dict[str, Any] = self.call("GET", "/scenario")
        return result

    def scenarios(self) -> list[dict[str, Any]]:
        """``GET /scenarios``: the shipped scenarios."""
        result: list[dict[str, Any]] = self.call("GET", "/scenarios")
        return result

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``PUT /scenario``: a whole scenario, or ``{"name": NAME}`` for a shipped one."""
        result: dict[str, Any] = self.call("PUT", "/scenario", doc)
        return result

    def jump(self, phase: str) -> dict[str, Any]:
        """``POST /scenario/phase``."""
        result: dict[str, Any] = self.call("POST", "/scenario/phase", {"phase": phase})
        return result

    def stats(self, cluster: bool = False) -> dict[str, Any]:
        """``GET /stats`` (``cluster``: ``?scope=cluster``, every replica's added up)."""
        result: dict[str, Any] = self.call("GET", "/stats?scope=cluster" if cluster else "/stats")
        return result

    def decisions(self, limit: int | None = None, since: int = 0) -> list[dict[str, Any]]:
        """``GET /decisions``: recent requests, newest last."""
        query = [f"since={since}"] if since else []
        if limit is not None:
            query.append(f"limit={limit}")
        result: list[dict[str, Any]] = self.call(
            "GET", "/decisions" + ("?" + "&".join(query) if query else "")
        )
        return result

    def explain(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /explain``: what each rule would do with ``request`` now."""
        result: dict[str, Any] = self.call("POST", "/explain", request)
        return result
