"""The services a proxy runs beside its flows: the control API and the ``--watch`` poller.

Both start in the addon's ``running`` hook (on mitmproxy's loop) and stop in ``done``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chaosproxy.control.server import AdminConfigError, ControlServer
from chaosproxy.control.target import ControlTarget
from chaosproxy.core.scenario import Scenario
from chaosproxy.proxy_addons.watch import Watcher

logger = logging.getLogger("chaosproxy")


class ControlService:
    """The control API's address (None: none), token, and whether failing to bind it stops
    the proxy (``required``: an explicit --admin) or only warns (the default address)."""

    def __init__(
        self, address: tuple[str, int] | None, token: str | None, required: bool = True
    ) -> None:
        self.address = address
        self.token = token
        self.required = required
        self.server: ControlServer | None = None
        #: why a required control API could not start (the proxy then refuses to start)
        self.error: str | None = None

    @property
    def url(self) -> str | None:
        """The control API's base URL, once it serves (None without one)."""
        return self.server.url if self.server is not None else None

    async def start(self, target: ControlTarget) -> None:
        if self.address is None or self.server is not None:
            return
        host, port = self.address
        try:
            server = ControlServer(target, host, port, self.token)
            await server.start()
        except (AdminConfigError, OSError) as exc:
            message = f"cannot start the control API on {host}:{port}: {exc}"
            if self.required:
                self.error = message
                logger.error("%s", message)
            else:
                logger.warning("%s; running without it (give --admin HOST:PORT)", message)
            return
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


class WatchService:
    """With ``--watch``: apply the scenario file again whenever it changes."""

    def __init__(self) -> None:
        #: the scenario file to watch (None: no watching)
        self.path: str | None = None
        self._watcher: Watcher | None = None

    def start(
        self, apply: Callable[[Scenario, str], object], current: Callable[[], str]
    ) -> None:
        if self.path is not None and self._watcher is None:
            self._watcher = Watcher(self.path, apply, current)
            self._watcher.start()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
