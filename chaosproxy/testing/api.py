"""ChaosProxy: an in-process chaos proxy for scripts and tests.

    with ChaosProxy(upstream="http://127.0.0.1:5001", scenario="flaky", seed=3) as proxy:
        requests.get(f"{proxy.url}/v1/forecast/berlin")
        print(proxy.stats)

The proxy runs mitmproxy on its own event loop in a daemon thread, listening on a free
loopback port. All per-proxy state lives on its addon, never in mitmproxy's global
``ctx.options``, so several proxies in one process do not share scenarios or counters.
Importing this module imports no mitmproxy module: a ChaosProxy imports it when made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosproxy.control.server import check_admin, parse_admin
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.decisions import DecisionRecord
from chaosproxy.core.scenario import Scenario
from chaosproxy.core.timeouts import Timeouts
from chaosproxy.testing.oracle import Calls

if TYPE_CHECKING:
    from chaosproxy.proxy_addons.runner import ProxySettings

ScenarioSpec = Scenario | Mapping[str, Any] | str | Path | None


def load_spec(
    spec: ScenarioSpec, directories: tuple[Path, ...] = ()
) -> tuple[Scenario, str | None]:
    """A scenario from a shipped name, a path, a dict or YAML text (raises ScenarioError)."""
    if spec is None:
        return scenario_mod.PASSTHROUGH, None
    if isinstance(spec, Scenario):
        return spec, None
    if isinstance(spec, Mapping):
        return scenario_mod.load_data(dict(spec), "<dict>"), None
    if isinstance(spec, Path):
        return scenario_mod.load_file(spec), str(spec)
    text = str(spec)
    if "\n" in text or text.lstrip().startswith("{") or ":" in text and not Path(text).exists():
        return scenario_mod.load_text(text, "<text>"), None
    found, path = scenario_mod.resolve(text, directories)
    return found, str(path)


class ChaosProxy:
    """An in-process chaos proxy in front of ``upstream`` (reverse) or ``forward=True``.

    ``upstream`` is a URL, or a list of ``NAME=URL@PORT`` specs for several upstreams.
    """

    def __init__(
        self,
        upstream: str | Sequence[str] | None = None,
        scenario: ScenarioSpec = None,
        seed: int | None = None,
        *,
        forward: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        insecure: bool = False,
        confdir: str | None = None,
        startup_timeout: float = 15.0,
        admin: bool | str | tuple[str, int] | None = None,
        admin_token: str | None = None,
        upstream_timeout: str | float | Timeouts | None = None,
    ) -> None:
        """``admin``: serve the control API too: True for a free loopback port, or
        ``"HOST:PORT"``; ``proxy.admin_url`` says where. Beyond loopback it needs
        ``admin_token``. ``upstream_timeout``: as ``--upstream-timeout`` (``"30s"``,
        ``"connect=2s,read=5s"``, ``"off"``, or seconds); None: connect 10 s, read 60 s.
        An upstream that misses it gets the client a 504."""
        if not upstream and not forward:
            raise ValueError("give upstream=URL (reverse proxy) or forward=True")
        specs = [upstream] if isinstance(upstream, str) else list(upstream or [])
        if admin is True:
            address: tuple[str, int] | None = ("127.0.0.1", 0)
        elif isinstance(admin, str):
            address = parse_admin(admin)
        else:
            address = admin or None
        if address is not None:
            check_admin(address[0], admin_token)
        from chaosproxy.proxy_addons.chaos import ChaosAddon
        from chaosproxy.proxy_addons.runner import ProxySettings, Upstream

        timeouts = Timeouts.of(upstream_timeout)
        found, source = load_spec(scenario)
        self.addon = ChaosAddon(
            found, source=source, seed=seed, admin=address, admin_token=admin_token
        )
        self.addon.deadlines.timeouts = timeouts
        self.settings: ProxySettings = ProxySettings(
            upstreams=[Upstream.parse(spec) for spec in specs],
            forward=forward,
            listen_host=host,
            listen_port=port,
            insecure=insecure,
            confdir=confdir,
        )
        self._startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._master: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.port: int = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ChaosProxy:
        """Start listening; returns once the proxy serves (raises StartupError if it cannot)."""
        from chaosproxy.proxy_addons.runner import StartupError

        if self._thread is not None:
            raise RuntimeError("this ChaosProxy is already started")
        self._thread = threading.Thread(target=self._run, name="chaosproxy", daemon=True)
        self._thread.start()
        if not self._started.wait(self._startup_timeout):
            raise StartupError(f"the proxy did not start within {self._startup_timeout:g}s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        from chaosproxy.proxy_addons.runner import StartupError, serve

        def ready(m: Any) -> None:
            self._master = m
            addrs = m.addons.get("proxyserver").listen_addrs()
            self.port = addrs[0][1]
            self._started.set()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await serve(self.addon, self.settings, on_ready=ready)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the thread that called start()
            self._error = exc if isinstance(exc, StartupError) else StartupError(str(exc))
        finally:
            self._started.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully and release the port."""
        from chaosproxy.proxy_addons.runner import stop

        loop, m = self._loop, self._master
        if loop is not None and m is not None and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(stop(m), loop)
            try:
                future.result(timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ steering

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the proxy's base URL (or proxy URL in forward mode)."""
        return f"http://{self.settings.listen_host}:{self.port}"

    @property
    def admin_url(self) -> str | None:
        """The control API's base URL (``http://127.0.0.1:PORT``), or None without one."""
        return self.addon.admin_url

    @property
    def engine(self) -> Any:
        return self.addon.engine

    def apply(self, scenario: ScenarioSpec, seed: int | None = None) -> Scenario:
        """Replace the scenario (a shipped name, a path, a dict, YAML text or a Scenario)."""
        found, source = load_spec(scenario)
        self.addon.apply(found, source, seed)  # the apply's seed wins, for this apply
        return found

    def jump_to(self, phase: str) -> None:
        self.addon.engine.jump_to(phase)
        self.addon.reschedule()

    def pause(self) -> None:
        self.addon.engine.pause()

    def resume(self) -> None:
        self.addon.engine.resume()

    def reset(self) -> None:
        """Counters, rate windows and the phase clock back to zero; the decision ring emptied."""
        self.addon.reset()

    @property
    def seed(self) -> int:
        return int(self.addon.engine.seed)

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.addon.engine.stats())

    @property
    def decisions(self) -> list[DecisionRecord]:
        """Recent requests (the newest 1000), oldest first, faulted or not: one
        :class:`~chaosproxy.core.decisions.DecisionRecord` each."""
        return self.addon.decisions.records()

    @property
    def calls(self) -> Calls:
        """The same requests with the resilience oracle's expectations
        (:class:`~chaosproxy.testing.oracle.Calls`: attempts, backoff, Retry-After, breaker)."""
        return Calls(self.decisions)

    def on_decision(self, listener: Callable[[DecisionRecord], object]) -> Callable[[], None]:
        """Call ``listener`` (on the proxy's thread) with each new record; returns the
        function that unsubscribes it."""
        return self.addon.decisions.subscribe(listener)
