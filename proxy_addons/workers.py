"""``chaosproxy run --workers N``: N proxy processes share the listening port, one engine decides.

One core cannot proxy as fast as a compiled proxy, so ``--workers N`` starts N worker
processes, each a full mitmproxy with the ChaosAddon, listening on the same port with
``SO_REUSEPORT`` (the kernel spreads new connections over them). The scenario's state
lives in one place, the coordinator (the process you started) and its scenario state
(in memory, or shared with other replicas in Redis: ``--state``), so a scenario means
exactly what it means with one process: rule counters, ``skip``/``every``/``times``,
rate-limit windows, phases, ``ttl``, pause and the seeded draws all advance in one engine,
in the order requests reach it.

- A worker matches each request against the rules of every phase of its copy of the
  scenario. When no rule could match, the request passes through at once; the worker
  only reports how many did (batched), for the request count.
- When a rule could match, the worker sends the request (method, URL, headers, query,
  body) to the coordinator, whose engine decides exactly as a single process would, and
  gets the decision back (rule, match number, seed: the fault's own randomness derives
  from them), then applies the faults itself.
- The control API (``--admin``), the decision log (workers forward their records), the
  metrics, ``--watch`` and the exit summary live in the coordinator. A scenario applied
  there is sent to every worker.
- A worker that dies is started again; the coordinator stops its workers when it stops,
  and a worker stops when its coordinator is gone.

Coordinator and workers talk over a Unix socket in a private temporary directory:
length-prefixed pickles (both ends are this program, started by this process).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaosproxy.core.decisions import DecisionRecord, record_from_values, record_values
from chaosproxy.core.engine import Decision, Engine, RequestView, SimpleRequest
from chaosproxy.proxy_addons import _internals
from chaosproxy.proxy_addons.chaos import ChaosAddon

logger = logging.getLogger("chaosproxy")

#: Workers report passthrough requests (and decision records) this often, at most.
FLUSH_INTERVAL = 0.05
#: Workers report how many flows they hold (for /stats and metrics) this often, on change.
HELD_INTERVAL = 0.2
#: A worker that dies is restarted, unless this many died within a minute.
MAX_RESTARTS_PER_MINUTE = 5


# --------------------------------------------------------------------------- framing


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


async def _read(reader: asyncio.StreamReader) -> Any:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return pickle.loads(await reader.readexactly(size))


def snapshot(view: Any, request: Any) -> SimpleRequest:
    """A worker's request (its FlowRequest ``view`` of the mitmproxy ``request``) as plain
    values, for the coordinator's engine."""
    return SimpleRequest(
        method=view.method,
        host=view.host,
        path=view.path,
        headers=list(request.headers.items(multi=True)) if request is not None else [],
        query_pairs=list(request.query.items(multi=True)) if request is not None else [],
        content=(request.get_content(strict=False) or b"") if request is not None else b"",
        upstream=view.upstream,
        as_requested=view.url,
        point=getattr(view, "point", "request"),
    )


@dataclass
class WorkerSetup:
    """What the coordinator sends a worker when it connects."""

    index: int
    settings: Any  # runner.ProxySettings, with the port(s) the coordinator reserved
    scenario: Any
    source: str | None
    seed: int
    log_format: str
    quiet: bool
    upstream_timeouts: Any = None  # core.timeouts.Timeouts; None: the defaults
    admin_token: str | None = None  # request_faults: what X-Chaos-Token must carry


# --------------------------------------------------------------------------- ports


def reserve_ports(settings: Any) -> list[socket.socket]:
    """Bind (without listening) every port the workers will listen on, with SO_REUSEPORT.

    A port in use fails here (RuntimeError, a clear message) before any worker starts; a
    port 0 gets a real number (written back into ``settings``); and while the coordinator
    runs, no other program can take the port. Sockets that do not listen get no connections.
    """
    host = settings.listen_host or "0.0.0.0"
    held: list[socket.socket] = []
    ports: dict[int, int] = {}

    def bind(port: int) -> int:
        if port in ports:
            return ports[port]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            for s in held:
                s.close()
            raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        held.append(sock)
        ports[port] = sock.getsockname()[1]
        return ports[port]

    settings.listen_port = bind(settings.listen_port)
    upstreams = []
    for up in settings.upstreams:
        if up.port is not None:
            up = dataclasses.replace(up, port=bind(up.port))
        upstreams.append(up)
    settings.upstreams = upstreams
    return held


def ensure_ca(settings: Any) -> None:
    """Create mitmproxy's CA in the confdir now, if missing: workers starting together
    would each create one, and the files would not match the CA a worker serves with."""
    from mitmproxy import certs, options

    confdir = os.path.expanduser(settings.confdir or options.CONF_DIR)
    key_size = settings.mitm_options.get("key_size", options.KEY_SIZE)
    certs.CertStore.from_store(confdir, options.CONF_BASENAME, key_size)


# --------------------------------------------------------------------------- coordinator


class _WorkerConn:
    def __init__(self, index: int, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.writer = writer
        self.passed = 0
        self.held = 0

    def send(self, message: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(_frame(message))


class Coordinator:
    """Holds the engine (in ``addon``), starts the workers and answers their questions."""

    def __init__(self, addon: Any, settings: Any, workers: int, log_format: str, quiet: bool):
        self.addon = addon
        self.settings = settings
        self.count = workers
        self.log_format = log_format
        self.quiet = quiet
        self.conns: dict[int, _WorkerConn] = {}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.served: dict[int, int] = dict.fromkeys(range(1, workers + 1), 0)
        self._ready: dict[int, asyncio.Future[None]] = {}
        self._deaths: list[float] = []
        self._stopping = False
        self._dir = tempfile.TemporaryDirectory(prefix="chaosproxy-workers-")
        self.path = str(Path(self._dir.name) / "coordinator.sock")
        self._server: asyncio.AbstractServer | None = None
        self._held: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Future[None] | None = None
        addon.on_apply = self._scenario_applied

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reserve the ports, start the workers, return once all of them listen."""
        self._loop = asyncio.get_running_loop()
        self._held = reserve_ports(self.settings)
        await asyncio.to_thread(ensure_ca, self.settings)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)
        loop = asyncio.get_running_loop()
        for index in range(1, self.count + 1):
            self._ready[index] = loop.create_future()
            self._spawn(index)
        waiting = [asyncio.ensure_future(self._until_ready(i)) for i in self._ready]
        try:
            await asyncio.gather(*waiting)
        except BaseException:
            for task in waiting:
                task.cancel()
            await self.stop()
            raise
        self._watcher = asyncio.ensure_future(self._watch())

    async def _until_ready(self, index: int) -> None:
        fut = self._ready[index]
        while not fut.done():
            proc = self.procs[index]
            if proc.poll() is not None:
                raise RuntimeError(f"worker {index} exited during startup ({proc.returncode})")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), 0.05)

    def _spawn(self, index: int) -> None:
        # not `-m chaosproxy.proxy_addons.workers`: pickled classes must name this module,
        # not __main__
        code = (
            "import sys; from chaosproxy.proxy_addons.workers import worker_main; "
            "sys.exit(worker_main())"
        )
        cmd = [sys.executable, "-c", code, self.path, str(index)]
        self.procs[index] = subprocess.Popen(cmd)

    async def _watch(self) -> None:
        """Restart workers that die (a bounded number of times)."""
        while not self._stopping:
            await asyncio.sleep(0.2)
            for index, proc in list(self.procs.items()):
                if self._stopping or proc.poll() is None:
                    continue
                now = time.monotonic()
                self._deaths = [t for t in self._deaths if now - t < 60] + [now]
                if len(self._deaths) > MAX_RESTARTS_PER_MINUTE:
                    logger.error("worker %d exited (%s); too many restarts", index, proc.returncode)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                logger.warning("worker %d exited (%s); starting it again", index, proc.returncode)
                self._ready[index] = asyncio.get_running_loop().create_future()
                self._spawn(index)

    async def stop(self, grace: float = 3.0) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after ``grace``) and close the socket."""
        self._stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # the workers' last reports arrive before their connections close
        deadline = time.monotonic() + 1.0
        while self.conns and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._server is not None:
            self._server.close()
        for sock in self._held:
            sock.close()
        self._dir.cleanup()

    def summary_lines(self) -> list[str]:
        served = ", ".join(f"worker {i}: {n}" for i, n in sorted(self.served.items()))
        return [f"requests per worker: {served}"]

    # ------------------------------------------------------------------ talking

    def _scenario_applied(self) -> None:
        """``addon.apply`` ran (the control API, --watch; maybe another thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._broadcast_scenario)

    def _broadcast_scenario(self) -> None:
        engine = self.addon.engine
        message = ("scenario", engine.scenario, engine.source)
        for conn in self.conns.values():
            conn.send(message)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn: _WorkerConn | None = None
        engine = self.addon.engine
        try:
            hello = await _read(reader)
            index = int(hello[1])
            conn = _WorkerConn(index, writer)
            self.conns[index] = conn
            conn.send(
                WorkerSetup(
                    index,
                    self.settings,
                    engine.scenario,
                    engine.source,
                    engine.seed,
                    self.log_format,
                    self.quiet,
                    self.addon.deadlines.timeouts,
                    self.addon.control.token,
                )
            )
            while True:
                message = await _read(reader)
                kind = message[0]
                if kind == "decide":
                    _, ident, passed, request = message
                    self._passed(conn, passed)
                    self.served[index] = self.served.get(index, 0) + 1
                    verdict = self.addon.state.decide(request)  # in memory, or --state
                    if verdict is None or isinstance(verdict, Decision):
                        conn.send(("decision", ident, verdict))
                    else:
                        asyncio.ensure_future(_answer_later(conn, ident, verdict))
                elif kind == "report":
                    _, passed, records = message
                    self._passed(conn, passed)
                    log = self.addon.decisions
                    for values in records:
                        log.add(record_from_values(values, seq=log.next_seq()))
                elif kind == "held":
                    conn.held = message[1]
                    self.addon.held_elsewhere = sum(c.held for c in self.conns.values())
                elif kind == "ready":
                    _internals.note_worker_patches(message[1])
                    fut = self._ready.get(index)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if conn is not None and self.conns.get(conn.index) is conn:
                del self.conns[conn.index]
                self.addon.held_elsewhere = sum(c.held for c in self.conns.values())
            writer.close()

    def _passed(self, conn: _WorkerConn, n: int) -> None:
        if n:
            self.addon.engine.count_unmatched(n)
            self.served[conn.index] = self.served.get(conn.index, 0) + n


async def _answer_later(
    conn: _WorkerConn, ident: int, verdict: Awaitable[Decision | None]
) -> None:
    """Send a decision the shared state gives later (``--state``)."""
    conn.send(("decision", ident, await verdict))


async def coordinate(
    addon: Any,
    settings: Any,
    workers: int,
    log_format: str,
    quiet: bool,
    on_ready: Callable[[], object],
) -> None:
    """``chaosproxy run --workers N``: run until SIGINT/SIGTERM (raises StartupError)."""
    from chaosproxy.proxy_addons.runner import StartupError

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal() -> None:
        if stopping.is_set():  # a second Ctrl-C: leave now
            os._exit(130)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    coordinator = Coordinator(addon, settings, workers, log_format, quiet)
    try:
        await coordinator.start()
    except (OSError, RuntimeError) as exc:
        raise StartupError(str(exc)) from None
    # every worker listens: the engine's clock, phase timer, control API, --watch start
    await addon.running()
    if addon.control_error:
        await coordinator.stop()
        addon.control.stop()
        raise StartupError(addon.control_error)
    on_ready()
    await stopping.wait()
    await coordinator.stop()
    addon.done()
    for line in coordinator.summary_lines():
        logger.info("%s", line)


# --------------------------------------------------------------------------- worker


class Link:
    """A worker's connection to its coordinator."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.passed = 0
        self.records: list[tuple[Any, ...]] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self.closed = False

    def note_passed(self) -> None:
        self.passed += 1
        self._soon()

    def note_record(self, record: DecisionRecord) -> None:
        self.records.append(record_values(record))
        self._soon()

    def _soon(self) -> None:
        if self._flush is None and not self.closed:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        self._flush = None
        if (self.passed or self.records) and not self.closed:
            self.writer.write(_frame(("report", self.passed, self.records)))
            self.passed, self.records = 0, []

    async def decide(self, request: SimpleRequest) -> Any:
        """The coordinator's decision for ``request`` (None: untouched)."""
        if self.closed:
            return None
        ident = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        self.writer.write(_frame(("decide", ident, self.passed, request)))
        self.passed = 0
        return await fut

    def send(self, message: Any) -> None:
        if not self.closed:
            self.writer.write(_frame(message))

    async def listen(self, on_scenario: Callable[[Any, str | None], None]) -> None:
        """Read the coordinator's answers and scenarios until it goes away."""
        try:
            while True:
                message = await _read(self.reader)
                if message[0] == "decision":
                    fut = self._pending.pop(message[1], None)
                    if fut is not None and not fut.done():
                        fut.set_result(message[2])
                elif message[0] == "scenario":
                    on_scenario(message[1], message[2])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed = True
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_result(None)  # fail open: untouched
            self._pending.clear()


class CoordinatorDecider:
    """A worker's :class:`~chaosproxy.proxy_addons.decider.Decider`: requests no rule of its
    copy of the scenario could match pass at once (counted for the coordinator); the others
    are decided by the coordinator's engine."""

    def __init__(self, engine: Engine, link: Link) -> None:
        self.engine = engine
        self.link = link

    def decide_early(self, view: RequestView) -> tuple[bool, Decision | None]:
        if self.engine.could_match(view, head_only=True):
            return False, None  # the body is read whole and the coordinator decides
        self.link.note_passed()
        return True, None

    def decide(self, view: Any, request: Any) -> Decision | None | Awaitable[Decision | None]:
        if not self.engine.could_match(view):
            self.link.note_passed()
            return None
        return self.link.decide(snapshot(view, request))


def make_worker_addon(setup: WorkerSetup, link: Link) -> ChaosAddon:
    """The ChaosAddon of a worker: decisions come from the coordinator."""
    addon = ChaosAddon(
        setup.scenario, source=setup.source, seed=setup.seed, admin_token=setup.admin_token
    )
    addon.decider = CoordinatorDecider(addon.engine, link)
    addon.engine.on_event = None  # the coordinator's engine tells the phases
    addon.summary_at_exit = False
    if setup.upstream_timeouts is not None:
        addon.deadlines.timeouts = setup.upstream_timeouts
    addon.decisions.subscribe(link.note_record)
    return addon


class ScenarioApplier:
    """Applies the scenarios a worker is sent in a thread, in arrival order: a large
    scenario's rules take a while to compile, and the worker keeps serving meanwhile (the
    engine is thread-safe)."""

    def __init__(self, apply: Callable[[Any, str | None], object]) -> None:
        self._apply = apply
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chaosproxy-apply")

    def submit(self, scenario: Any, source: str | None) -> concurrent.futures.Future[object]:
        return self._pool.submit(self._apply, scenario, source)

    def close(self) -> None:
        """The worker stops: scenarios not yet applied are dropped; one being applied
        finishes in its thread (without holding up the loop)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _worker_main(path: str, index: int) -> None:
    from chaosproxy.proxy_addons import logs
    from chaosproxy.proxy_addons.runner import serve, stop

    reader, writer = await asyncio.open_unix_connection(path)
    link = Link(reader, writer)
    link.send(("hello", index))
    setup: WorkerSetup = await _read(reader)
    logs.configure(setup.log_format, quiet=setup.quiet)
    _internals.apply(_internals.WORKER)  # listen on the port the other workers share
    addon = make_worker_addon(setup, link)
    loop = asyncio.get_running_loop()
    masters: list[Any] = []
    stopping: list[asyncio.Future[None]] = []

    def on_stop() -> None:
        if not stopping and masters:
            stopping.append(asyncio.ensure_future(stop(masters[0])))

    applier = ScenarioApplier(addon.engine.apply)

    def on_scenario(scenario: Any, source: str | None) -> None:
        applier.submit(scenario, source)

    async def follow() -> None:
        await link.listen(on_scenario)
        on_stop()  # the coordinator is gone: stop too

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop)
    listening = asyncio.ensure_future(follow())
    tasks: list[asyncio.Future[None]] = []

    async def report_held() -> None:
        """Tell the coordinator how many flows this worker holds, when that changes."""
        sent = 0
        while not link.closed:
            await asyncio.sleep(HELD_INTERVAL)
            if addon.held != sent:
                sent = addon.held
                link.send(("held", sent))

    def ready(_: Any) -> None:
        _internals.settle_heap()
        link.send(("ready", _internals.active()))
        tasks.append(asyncio.ensure_future(report_held()))

    try:
        await serve(addon, setup.settings, on_ready=ready, on_master=masters.append)
    finally:
        link.flush()
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        listening.cancel()
        for task in tasks:
            task.cancel()
        writer.close()
        applier.close()


def worker_main(argv: Sequence[str] | None = None) -> int:
    """A worker process: ``worker_main([COORDINATOR_SOCKET, INDEX])``."""
    _internals.lean_start()
    path, index = (argv if argv is not None else sys.argv[1:])[:2]
    try:
        asyncio.run(_worker_main(path, int(index)))
    except Exception as exc:  # the coordinator reports and restarts
        print(f"chaosproxy worker {index}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
