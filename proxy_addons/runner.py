"""Run mitmproxy with the ChaosAddon: modes, options, a lean addon set, startup and stop.

``chaosproxy run`` and the in-process Python API both go through :func:`serve`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import master, options
from mitmproxy.addons import (
    block,
    core,
    disable_h2c,
    next_layer,
    proxyserver,
    tlsconfig,
    update_alt_svc,
)
from mitmproxy.proxy import mode_specs

from chaosproxy.proxy_addons import _internals
from chaosproxy.proxy_addons._internals import clientsock, listeners
from chaosproxy.proxy_addons.chaos import ChaosAddon

logger = logging.getLogger("chaosproxy")


class StartupError(Exception):
    """The proxy could not start (a port in use, a bad upstream URL...)."""

    def __init__(self, message: str, in_use: tuple[str, int] | None = None) -> None:
        super().__init__(message)
        #: the listen address that was already in use, when that was the trouble
        self.in_use = in_use


_IN_USE = re.compile(r"failed to listen on \[?([^\s\]]*?)\]?:(\d+) with .*already in use")


@dataclass(frozen=True)
class Upstream:
    """Where reverse mode forwards to; ``name`` and ``port`` when there are several."""

    url: str
    name: str | None = None
    port: int | None = None

    @staticmethod
    def parse(text: str) -> Upstream:
        """``URL`` or ``NAME=URL@PORT``."""
        name = None
        port = None
        spec = text
        if "=" in spec.split("://", 1)[0]:
            name, spec = spec.split("=", 1)
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"upstream name {name!r} must be letters, digits, - or _")
        if name is not None:
            url, sep, port_text = spec.rpartition("@")
            if not sep or not port_text.isdigit():
                raise ValueError(
                    f"{text!r}: write NAME=URL@PORT, e.g. weather=http://127.0.0.1:5001@8081"
                )
            spec, port = url, int(port_text)
            if not 0 < port < 65536:
                raise ValueError(f"{text!r}: port {port} is out of range")
        parts = urlsplit(spec)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{spec!r} is not an http:// or https:// URL")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{spec!r}: give the upstream's origin only (scheme, host, port)")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise ValueError(f"{spec!r}: {exc}") from None
        return Upstream(url=f"{parts.scheme}://{parts.netloc}", name=name, port=port)


@dataclass
class ProxySettings:
    """How the proxy listens and where it forwards."""

    upstreams: Sequence[Upstream] = ()
    forward: bool = False
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    insecure: bool = False
    confdir: str | None = None
    mitm_options: dict[str, Any] = field(default_factory=dict)

    def modes(self) -> tuple[list[str], dict[str, str]]:
        """mitmproxy mode specs, and listener spec -> upstream NAME for named upstreams."""
        specs: list[str] = []
        names: dict[str, str] = {}
        if self.forward:
            specs.append(f"regular@{self.listen_port}")
        for up in self.upstreams:
            port = up.port if up.port is not None else self.listen_port
            spec = mode_specs.ProxyMode.parse(f"reverse:{up.url}@{port}").full_spec
            specs.append(spec)
            if up.name:
                names[spec] = up.name
        if not specs:
            raise StartupError("give --upstream URL (reverse proxy) or --forward (HTTP_PROXY)")
        return specs, names

    def describe(self) -> str:
        parts = []
        if self.forward:
            parts.append(f"forward proxy on http://{self.listen_host}:{self.listen_port}")
        for up in self.upstreams:
            port = up.port if up.port is not None else self.listen_port
            label = f"{up.name} " if up.name else ""
            parts.append(f"http://{self.listen_host}:{port} -> {label}{up.url}")
        return "; ".join(parts)


def lean_addons() -> list[Any]:
    """The mitmproxy addons a reverse or forward chaos proxy needs, and no more.

    mitmdump loads ~36 addons and runs every hook through each; these are the ones that
    serve traffic (proxyserver, nextlayer, tlsconfig), keep the open-proxy protection
    (block), and keep HTTP sane (h2c, Alt-Svc in reverse mode).
    """
    return [
        core.Core(),
        block.Block(),
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        update_alt_svc.UpdateAltSvc(),
    ]


class _StartupErrors(logging.Handler):
    """mitmproxy's error lines while the proxy starts, held back from the other handlers:
    a failed start is told once, as a StartupError; after a good one they are logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._hidden: list[logging.Handler] = []

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @staticmethod
    def _hide(record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.name.startswith("mitmproxy"))

    def attach(self) -> None:
        root = logging.getLogger()
        self._hidden = list(root.handlers)
        for handler in self._hidden:
            handler.addFilter(self._hide)
        root.addHandler(self)

    def detach(self, replay: bool) -> None:
        logging.getLogger().removeHandler(self)
        for handler in self._hidden:
            handler.removeFilter(self._hide)
        if replay:
            for record in self.records:
                logging.getLogger(record.name).handle(record)

    def error(self) -> StartupError:
        messages = self.messages
        for message in messages:
            found = _IN_USE.search(message)
            if found:
                return StartupError(message, (found[1], int(found[2])))
        return StartupError("\n".join(messages) or "the proxy stopped during startup")


def build_master(addon: ChaosAddon, settings: ProxySettings) -> master.Master:
    """A mitmproxy Master with the lean addon set and ``addon``; call inside a running loop.

    Applies the seam's :data:`~._internals.PROXY` patches first (several in-process
    proxies each see their own master), and :data:`~._internals.MASTER` to the master.
    """
    specs, names = settings.modes()
    _internals.apply(_internals.PROXY)
    addon.upstream_names = names
    opts = options.Options()
    m = master.Master(opts, with_termlog=False)
    m.addons.add(*lean_addons(), addon)
    if _internals.is_lean():
        _internals.apply(_internals.MASTER, master=m)
    updates: dict[str, Any] = {
        "mode": specs,
        "listen_host": settings.listen_host,
        "connection_strategy": "lazy",
        "ssl_insecure": settings.insecure,
    }
    if settings.confdir:
        updates["confdir"] = settings.confdir
    updates.update(settings.mitm_options)
    opts.update(**updates)
    return m


async def serve(
    addon: ChaosAddon,
    settings: ProxySettings,
    *,
    on_ready: Callable[[master.Master], None] | None = None,
    on_master: Callable[[master.Master], None] | None = None,
) -> None:
    """Run the proxy until it is shut down (``master.shutdown()``).

    Raises StartupError when the servers cannot start. ``on_ready`` runs once the
    listeners are bound (the bound addresses are in ``proxyserver.listen_addrs()``).
    """
    errors = _StartupErrors()
    errors.attach()
    try:
        m = build_master(addon, settings)
    except Exception as exc:
        errors.detach(replay=True)
        raise StartupError(str(exc)) from None
    if on_master is not None:
        on_master(m)
    ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_running() -> None:
        if not ready.done():
            ready.set_result(True)

    addon.when_ready(on_running)
    addon.hold()  # requests wait for on_ready's announcement
    summary, addon.summary_at_exit = addon.summary_at_exit, False  # none for a failed start
    run: asyncio.Future[None] = asyncio.ensure_future(m.run())
    started = False
    try:
        waiting: list[asyncio.Future[Any]] = [run, ready]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        ps = m.addons.get("proxyserver")
        bound = len(ps.listen_addrs()) >= len(m.options.mode)
        if run in done or not bound or addon.control_error:
            if run not in done:
                m.shutdown()
                await run
            raise errors.error()
        _internals.apply(_internals.LISTENING, master=m)
        started = True
        addon.summary_at_exit = summary
    finally:
        errors.detach(replay=started)
    try:
        if on_ready is not None:
            on_ready(m)
    finally:
        addon.open()
    await run


async def stop(m: master.Master, grace: float = 0.3) -> None:
    """Stop gracefully: stop listening (releasing the ports), let held and delayed flows go,
    give them ``grace`` seconds to finish, close the remaining client connections, shut down.
    """
    loop = asyncio.get_running_loop()
    chaos = next((a for a in m.addons.chain if isinstance(a, ChaosAddon)), None)
    await listeners.stop_listening(m)
    if chaos is not None:
        chaos.release_all()
        deadline = loop.time() + grace
        while chaos.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.01)
    handlers = clientsock.connection_handlers(m)
    for handler in handlers:
        clientsock.close_client(handler)
    deadline = loop.time() + grace
    while handlers and clientsock.connection_handlers(m) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    m.shutdown()
