"""pytest plugin: a chaos proxy per session, a scenario per test, an oracle on the traffic.

Registered as the ``chaosproxy`` pytest11 entry point, so installing chaosproxy is enough::

    @pytest.fixture(scope="session")
    def chaos_proxy_upstream():
        return "http://127.0.0.1:5001"          # the service your client calls

    @pytest.mark.chaos("flaky", seed=3)
    def test_client_survives(chaos_proxy):
        client = WeatherClient(base_url=chaos_proxy.url)
        assert client.forecast("berlin")
        chaos_proxy.calls.expect_attempts(at_most=3)

One in-process :class:`~chaosproxy.testing.api.ChaosProxy` per upstream serves the whole
session (started on first use, on a free loopback port); before each test it is reset to
passthrough, or to the test's ``chaos`` marker. The seed comes from ``apply(seed=)``, the
marker, ``--chaos-seed``, ``CHAOSPROXY_SEED``, the ``chaos_seed`` ini option, the
scenario's own seed, or is chosen at random, in that order; a failing test's report names
it, with the decisions taken, so ``--chaos-seed N`` replays the failure exactly.

``@pytest.mark.chaos_explore`` and ``--chaos-explore`` run a test once per (upstream call
x fault), only that call failing (:mod:`chaosproxy.testing.explorer`, made on first need).

pytest loads this module in every session where chaosproxy is installed, so it imports
only pytest at load: the proxy, the scenario model and mitmproxy are imported by the
fixtures that use them (a session that never asks for ``chaos_proxy`` imports none).
"""

from __future__ import annotations

import os
import threading
import time
from argparse import SUPPRESS
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chaosproxy.core.timeouts import Timeouts
from chaosproxy.core.units import counted

if TYPE_CHECKING:
    from chaosproxy.core.decisions import DecisionRecord
    from chaosproxy.core.scenario import Scenario
    from chaosproxy.testing.api import ChaosProxy, ScenarioSpec
    from chaosproxy.testing.assess.model import Assessment, Progress
    from chaosproxy.testing.explorer import Explorer
    from chaosproxy.testing.oracle import Calls

SEED_ENV = "CHAOSPROXY_SEED"
MARKER = "chaos"
EXPLORE_MARKER = "chaos_explore"

_fixture_key = pytest.StashKey["ChaosFixture"]()
_summary_key = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()
_order_key = pytest.StashKey[dict[str, int]]()
_explorer_key = pytest.StashKey["Explorer"]()
_explore_results_key = pytest.StashKey[list[dict[str, Any]]]()


# --------------------------------------------------------------------------- settings


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaosproxy", "chaos proxy (fault injection)")
    group.addoption(
        "--chaos-seed",
        dest="chaos_seed",
        default=None,
        metavar="N",
        help=f"seed for every chaos scenario (replays a failure); env {SEED_ENV}",
    )
    group.addoption(
        "--chaos-scenarios",
        dest="chaos_scenarios",
        default=None,
        metavar="DIR",
        help="directory of scenario files that apply() and the chaos marker find by name",
    )
    group.addoption(
        "--chaos-upstream-timeout",
        dest="chaos_upstream_timeout",
        default=None,
        metavar="DURATION|connect=D,read=D|off",
        help="give up on a slow upstream with a 504 (default connect=10s,read=60s)",
    )
    explore = parser.getgroup("chaosproxy-explore", "chaos proxy: fault-space exploration")
    explore.addoption(
        "--chaos-explore",
        action="store_true",
        default=None,  # None: not given (no exploration made at start)
        dest="chaos_explore",
        help="explore every test using chaos_proxy: fail each upstream call it makes with "
        "each fault of the menu, one run (one item) each",
    )
    explore.addoption(
        "--chaos-explore-max",
        dest="chaos_explore_max",
        default=None,
        metavar="N",
        help="at most N faulted runs per explored test (calls in the order first made)",
    )
    explore.addoption(
        "--chaos-explore-depth",
        dest="chaos_explore_depth",
        default=None,
        metavar="1|2",
        help="2: also pairs of calls failing in one run, where both passed alone",
    )
    explore.addoption(
        "--chaos-explore-json",
        dest="chaos_explore_json",
        default=None,
        metavar="FILE",
        help="write the exploration's report as JSON",
    )
    explore.addoption(
        "--chaos-replay",
        dest="chaos_replay",
        default=None,
        metavar="TOKEN",
        help="run a test with the faults of one exploration run (the report prints the line)",
    )
    explore.addoption(
        "--chaos-explore-record", dest="chaos_explore_record", default=None, help=SUPPRESS
    )
    parser.addini("chaos_seed", "seed for every chaos scenario (see --chaos-seed)", default="")
    parser.addini(
        "chaos_upstream_timeout", "upstream timeouts (see --chaos-upstream-timeout)", default=""
    )
    parser.addini(
        "chaos_scenarios", "directories of scenario files found by name", type="paths", default=[]
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(scenario, seed=None): run the test with this chaosproxy scenario "
        "(a shipped name, a path, a dict or YAML text) applied to the chaos_proxy fixture",
    )
    config.addinivalue_line(
        "markers",
        f"{EXPLORE_MARKER}(faults=None, attempts='all', key=None, max=None): run the test "
        "once fault-free, then once per (upstream call x fault) with only that call failing",
    )
    config.stash[_summary_key] = []
    config.stash[_explore_results_key] = []
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistSummary(config), "chaosproxy-xdist-summary")
    _configured_seed(config)  # a bad seed, directory or timeout stops the run before any test
    _scenario_dirs(config)
    _upstream_timeouts(config)
    explore_options = (
        "chaos_explore",
        "chaos_replay",
        "chaos_explore_record",
        "chaos_explore_max",
        "chaos_explore_depth",
    )
    if any(config.getoption(name) is not None for name in explore_options):
        _explorer(config)


def _explorer(config: pytest.Config) -> Explorer:
    """The session's exploration (made on first need: it imports more than the plugin)."""
    explorer = config.stash.get(_explorer_key, None)
    if explorer is None:
        from chaosproxy.testing.explorer import Explorer

        seed, results = _configured_seed(config), config.stash[_explore_results_key]
        explorer = config.stash[_explorer_key] = Explorer(config, seed, results)
        config.pluginmanager.register(explorer, "chaosproxy-explorer")
    return explorer


@pytest.hookimpl(trylast=True)  # after the test's own parametrize: its ids come first
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    explorer = metafunc.config.stash.get(_explorer_key, None)
    if explorer is None and metafunc.definition.get_closest_marker(EXPLORE_MARKER) is None:
        return
    (explorer or _explorer(metafunc.config)).generate(metafunc)


def _int_seed(value: object, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise pytest.UsageError(f"{where}: {value!r} is not a whole number (a seed)") from None


def _configured_seed(config: pytest.Config) -> int | None:
    """The seed from the command line, the environment or the ini file (that order)."""
    option = config.getoption("chaos_seed")
    if option is not None:
        return _int_seed(option, "--chaos-seed")
    env = os.environ.get(SEED_ENV, "").strip()
    if env:
        return _int_seed(env, SEED_ENV)
    ini = str(config.getini("chaos_seed") or "").strip()
    if ini:
        return _int_seed(ini, f"{config.inipath or 'ini'}: chaos_seed")
    return None


def _upstream_timeouts(config: pytest.Config) -> Timeouts:
    """The upstream timeouts from the command line, else the ini file, else the defaults."""
    option = config.getoption("chaos_upstream_timeout")
    where = "--chaos-upstream-timeout"
    if option is None:
        option = str(config.getini("chaos_upstream_timeout") or "").strip() or None
        where = f"{config.inipath or 'ini'}: chaos_upstream_timeout"
    try:
        return Timeouts.parse(option) if option else Timeouts()
    except ValueError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from None


def _scenario_dirs(config: pytest.Config) -> tuple[Path, ...]:
    dirs: list[Path] = []
    option = config.getoption("chaos_scenarios")
    if option:
        dirs.append(Path(option))
    dirs.extend(Path(p) for p in config.getini("chaos_scenarios"))
    for d in dirs:
        if not d.is_dir():
            raise pytest.UsageError(f"chaos scenarios directory {d} does not exist")
    return tuple(dirs)


# --------------------------------------------------------------------------- the fixture


class ChaosFixture:
    """What a test sees as ``chaos_proxy``: the session's proxy, scoped to this test."""

    def __init__(self, proxy: ChaosProxy, config: pytest.Config) -> None:
        self.proxy = proxy
        self._config = config
        self._dirs = _scenario_dirs(config)
        self._lock = threading.Condition()
        self._records: list[DecisionRecord] = []
        self._unsubscribe = proxy.on_decision(self._collect)
        self.started = time.time()
        self.applied: list[str] = []
        #: the command that replays this test's failure, when not only the seed (exploration)
        self.replay: str | None = None

    def _collect(self, record: DecisionRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._lock.notify_all()

    def begin(self) -> None:
        """Back to passthrough with fresh counters and an empty traffic log."""
        from chaosproxy.core.scenario import PASSTHROUGH

        self.proxy.resume()
        self._set(PASSTHROUGH, None, None)
        self.applied = []
        with self._lock:
            self._records = []
        self.started = time.time()

    def close(self) -> None:
        self._unsubscribe()

    def _set(self, scenario: Scenario, source: str | None, seed: int | None) -> None:
        engine = self.proxy.engine
        engine.seed_override = _configured_seed(self._config)  # the run's seed
        self.proxy.addon.apply(scenario, source, seed)  # the marker's or apply(seed=)
        self.proxy.reset()

    # ------------------------------------------------------------------ steering

    @property
    def url(self) -> str:
        """The proxy's base URL: point the client under test here instead of the upstream."""
        return self.proxy.url

    def apply(self, scenario: ScenarioSpec, seed: int | None = None) -> Scenario:
        """Apply a scenario: a shipped name, a name in ``--chaos-scenarios``, a path, a dict
        or YAML text. The seed: ``seed``, else the configured one, else the scenario's."""
        from chaosproxy.core.scenario import ScenarioError
        from chaosproxy.testing.api import load_spec

        try:
            found, source = load_spec(scenario, self._dirs)
        except ScenarioError as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:
            pytest.fail(f"cannot apply chaos scenario:\n{problem}", pytrace=False)
        self._set(found, source, seed)
        self.applied.append(f"{found.label} (seed {self.seed})")
        return found

    def jump_to(self, phase: str) -> None:
        """Make phase ``phase`` of the scenario active now."""
        self.proxy.jump_to(phase)

    def pause(self) -> None:
        self.proxy.pause()

    def resume(self) -> None:
        self.proxy.resume()

    def assess(
        self,
        trigger: str | Sequence[str] | Callable[[], Any],
        *,
        quick: bool = False,
        seed: int | None = None,
        method: str = "GET",
        body: str | None = None,
        trigger_timeout_s: float = 30.0,
        hang_cap_s: float = 10.0,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> Assessment:
        """Learn the policy of the client under test (``chaosproxy assess``) through this
        proxy, and return the :class:`~chaosproxy.testing.assess.model.Assessment`.

        ``trigger`` makes one logical call: a URL of the app (requested with ``method``
        and ``body``), a command (run with ``CHAOSPROXY_URL`` in its environment) or a
        callable (returning a status or a response; raising is a failed call). A call
        not over within ``trigger_timeout_s`` is recorded as unanswered. The proxy is
        back to passthrough afterwards.
        """
        from chaosproxy.testing.assess import runner

        made: runner.Trigger
        if isinstance(trigger, str):
            made = runner.UrlTrigger(trigger, method, body, trigger_timeout_s)
        elif callable(trigger):
            made = runner.CallableTrigger(trigger, method, trigger_timeout_s)
        else:
            env = {"CHAOSPROXY_URL": self.url}
            made = runner.CommandTrigger(list(trigger), env, trigger_timeout_s, method)
        if seed is None:
            seed = _configured_seed(self._config)
        try:
            return runner.assess(
                self.proxy,
                made,
                quick=quick,
                seed=1 if seed is None else seed,
                on_progress=on_progress,
                hang_cap_s=hang_cap_s,
            )
        finally:
            from chaosproxy.core.scenario import PASSTHROUGH

            self.applied.append(f"assess{' --quick' if quick else ''} (seed {seed})")
            self._set(PASSTHROUGH, None, None)

    # ------------------------------------------------------------------ reading

    @property
    def seed(self) -> int:
        return self.proxy.seed

    @property
    def scenario(self) -> str:
        return str(self.proxy.engine.scenario.label)

    @property
    def phase(self) -> str | None:
        phase: str | None = self.proxy.engine.phase
        return phase

    @property
    def stats(self) -> dict[str, Any]:
        return self.proxy.stats

    def _settle(self, timeout: float = 1.0) -> None:
        """Let requests whose fault is still ending (a reset being recorded) reach the log."""
        # A flow leaves in_flight just before its record is added, which wakes this wait.
        with self._lock:
            self._lock.wait_for(lambda: not self.proxy.addon.in_flight, timeout)

    @property
    def decisions(self) -> list[DecisionRecord]:
        """Every request the proxy saw during this test, oldest first."""
        self._settle()
        with self._lock:
            return sorted(self._records, key=lambda r: r.seq)

    @property
    def calls(self) -> Calls:
        """The same requests, with the resilience oracle's expectations
        (:class:`~chaosproxy.testing.oracle.Calls`)."""
        from chaosproxy.testing.oracle import Calls

        return Calls(self.decisions, origin=self.started)

    def counts(self) -> tuple[int, int]:
        """Requests seen and faults injected during this test (all scenarios it applied)."""
        records = self.decisions
        return len(records), sum(1 for r in records if r.rule is not None)

    def report(self) -> str:
        """What a failing test's report shows: scenario, seed, how to replay, the traffic."""
        stats = self.stats
        calls = self.calls
        requests, injected = self.counts()
        lines = [
            f"scenario: {self.scenario} (seed {self.seed}), phase {self.phase or '-'}",
            f"applied during the test: {', '.join(self.applied) or 'none (passthrough)'}",
            f"replay: {self.replay or f'--chaos-seed {self.seed} (or {SEED_ENV}={self.seed})'}",
            f"requests: {requests}, faults injected: {injected}; rules of {self.scenario}:",
        ]
        for rule in stats["rules"]:
            where = f" in phase {rule['phase']}" if rule["phase"] else ""
            lines.append(
                f"  rule {rule['name']}{where} [{rule['fault']}]: "
                f"matched {rule['seen']}, injected {rule['injected']}"
            )
        lines.append("decisions (time, +seconds from test start, request -> outcome [rule]):")
        lines.append(calls.describe(limit=200))
        return "\n".join(lines)


class _ProxyPool:
    """One ChaosProxy per upstream URL, for the whole session."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.proxies: dict[str, ChaosProxy] = {}
        self.timeouts = timeouts

    def get(self, upstream: str) -> ChaosProxy:
        from chaosproxy.testing.api import ChaosProxy

        proxy = self.proxies.get(upstream)
        if proxy is None:
            proxy = ChaosProxy(upstream=upstream, upstream_timeout=self.timeouts)
            self.proxies[upstream] = proxy.start()
        return proxy

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()


@pytest.fixture(scope="session")
def _chaos_proxy_pool(pytestconfig: pytest.Config) -> Iterator[_ProxyPool]:
    pool = _ProxyPool(_upstream_timeouts(pytestconfig))
    yield pool
    pool.stop()


@pytest.fixture
def chaos_proxy_upstream() -> str:
    """The URL the chaos proxy forwards to. Override this fixture in your conftest.py."""
    pytest.fail(
        "chaos_proxy needs an upstream: define a fixture named chaos_proxy_upstream "
        "(in conftest.py) that returns the base URL of the service your client calls, "
        'e.g. "http://127.0.0.1:5001"',
        pytrace=False,
    )


@pytest.fixture
def _chaos_explore_run(request: pytest.FixtureRequest) -> Any:
    """The exploration run of this item (parametrized by the explorer), else None."""
    return getattr(request, "param", None)


@pytest.fixture
def chaos_proxy(
    request: pytest.FixtureRequest,
    _chaos_proxy_pool: _ProxyPool,
    chaos_proxy_upstream: Any,
    _chaos_explore_run: Any,
) -> Iterator[ChaosFixture]:
    """An in-process chaos proxy in front of ``chaos_proxy_upstream``, reset for this test."""
    upstream = str(getattr(chaos_proxy_upstream, "url", chaos_proxy_upstream)).rstrip("/")
    proxy = _chaos_proxy_pool.get(upstream)
    fixture = ChaosFixture(proxy, request.config)
    fixture.begin()
    request.node.stash[_fixture_key] = fixture
    explorer = request.config.stash.get(_explorer_key, None)
    try:
        marker = request.node.get_closest_marker(MARKER)
        if explorer is not None and explorer.begin(fixture, request.node, _chaos_explore_run):
            pass  # an exploration run (or its replay, or the recording) sets the scenario
        elif marker is not None:
            _apply_marker(fixture, marker)
        yield fixture
    finally:
        if explorer is not None:
            explorer.end(fixture, request.node)
        requests, injected = fixture.counts()
        request.config.stash[_summary_key].append(
            (
                request.node.nodeid,
                {
                    "order": request.config.stash.get(_order_key, {}).get(request.node.nodeid, 0),
                    "requests": requests,
                    "injected": injected,
                    "scenario": fixture.scenario,
                    "seed": fixture.seed,
                },
            )
        )
        fixture.close()


def _apply_marker(fixture: ChaosFixture, marker: pytest.Mark) -> None:
    if len(marker.args) != 1:
        pytest.fail(
            f"@pytest.mark.{MARKER} takes one scenario (a name, path, dict or YAML text), "
            f"got {len(marker.args)} arguments",
            pytrace=False,
        )
    unknown = set(marker.kwargs) - {"seed"}
    if unknown:
        pytest.fail(
            f"@pytest.mark.{MARKER}: unknown argument(s) {', '.join(sorted(unknown))}; valid: seed",
            pytrace=False,
        )
    seed = marker.kwargs.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        pytest.fail(
            f"@pytest.mark.{MARKER}: seed must be a whole number, got {seed!r}", pytrace=False
        )
    fixture.apply(marker.args[0], seed=seed)


@pytest.fixture(autouse=True)
def _chaos_marker(request: pytest.FixtureRequest, _chaos_explore_run: Any) -> None:
    """A test with the chaos (or chaos_explore) marker gets the chaos_proxy fixture even if
    it does not ask. It asks for ``_chaos_explore_run`` so that every test can be
    parametrized with exploration runs."""
    node = request.node
    if any(node.get_closest_marker(name) is not None for name in (MARKER, EXPLORE_MARKER)):
        request.getfixturevalue("chaos_proxy")


# --------------------------------------------------------------------------- reporting


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    fixture = item.stash.get(_fixture_key, None)
    if fixture is not None and report.failed and report.when in ("setup", "call"):
        report.sections.append(("chaosproxy", fixture.report()))
    return report


_WORKER_OUTPUT = "chaosproxy_summary"
_WORKER_EXPLORE = "chaosproxy_explore"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember the run order, so the summary lists tests in it (xdist finishes them out of
    order; every worker collects the same items)."""
    session.config.stash[_order_key] = {item.nodeid: i for i, item in enumerate(session.items)}


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands its per-test summary to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_WORKER_OUTPUT] = [list(entry) for entry in session.config.stash[_summary_key]]
        output[_WORKER_EXPLORE] = session.config.stash[_explore_results_key]
        return
    path = session.config.getoption("chaos_explore_json")
    if path:
        from chaosproxy.testing.explorer_report import write_json

        write_json(session.config.stash[_explore_results_key], Path(path))


class _XdistSummary:
    """On the xdist controller: gathers the workers' summaries as each worker ends."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        entries = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT, [])
        self.config.stash[_summary_key].extend((nodeid, e) for nodeid, e in entries)
        explored = getattr(node, "workeroutput", {}).get(_WORKER_EXPLORE, [])
        self.config.stash[_explore_results_key].extend(explored)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    explored = config.stash.get(_explore_results_key, [])
    if explored:
        from chaosproxy.testing.explorer_report import write_summary

        write_summary(terminalreporter, explored)
    collected: list[tuple[str, dict[str, Any]]] = config.stash.get(_summary_key, [])
    entries = sorted(collected, key=lambda entry: entry[1]["order"])
    if not entries:
        return
    terminalreporter.section("chaosproxy: faults injected per test")
    total = sum(e["injected"] for _, e in entries)
    for nodeid, e in entries:
        terminalreporter.write_line(
            f"{nodeid}: {counted(e['injected'], 'fault')} in {counted(e['requests'], 'request')} "
            f"(scenario {e['scenario']}, seed {e['seed']})"
        )
    terminalreporter.write_line(
        f"total: {counted(total, 'fault')} injected in {counted(len(entries), 'test')}"
    )
