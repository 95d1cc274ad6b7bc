"""The pytest side of fault-space exploration (``@pytest.mark.chaos_explore``,
``--chaos-explore``): record, generate one item per run, skip repeats, report, replay.

How the items come to be: while pytest collects a test module holding a test to explore,
one pytest subprocess runs that module's tests to explore fault-free, in recording mode
(``--chaos-explore-record FILE``), and writes the distinct calls each made. The module's
tests are then parametrized with their runs (``test_checkout[explore: POST /payments x
reset]``), so ``-k``, ``--lf`` and pytest-xdist see ordinary items. The recording is kept
for the session in ``.pytest_cache/chaosproxy-explore/<run id>/`` (the system's temporary
folder without the cache plugin) under a file lock: xdist workers share one run id, so the
first worker records and the others read the same file, and all collect the same items.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from chaosproxy.testing import explore as ex
from chaosproxy.testing.explore import Call, Run, Settings, Targeting

if TYPE_CHECKING:
    from chaosproxy.core.scenario import Scenario


class ExploredFixture(Protocol):
    """What exploration needs of the plugin's ``chaos_proxy`` fixture."""

    proxy: Any
    replay: str | None

    def apply(self, scenario: Scenario, seed: int | None = None) -> Scenario: ...


MARKER = "chaos_explore"
PARAM = "_chaos_explore_run"
MARKER_ARGS = ("faults", "attempts", "key", "latency", "hang", "retry_after", "max")
#: how long a pair waits for the single runs it depends on (under xdist: other workers)
PAIR_WAIT = 600.0
_RECORD_OPTIONS = ("chaos_seed", "chaos_scenarios", "chaos_upstream_timeout")

_run_key = pytest.StashKey[Run]()
_state_key = pytest.StashKey["_ItemState"]()


class _ItemState:
    """The exploration's hold on one running item."""

    def __init__(self, run: Run | None, targeting: Targeting) -> None:
        self.run = run
        self.targeting = targeting
        self.reached: set[Call] = set()


def base_nodeid(nodeid: str, run: Run) -> str:
    """The item's node id without the exploration's parameter."""
    tail = f"[{run.id}]"
    if nodeid.endswith(tail):
        return nodeid[: -len(tail)]
    tail = f"-{run.id}]"
    return nodeid[: -len(tail)] + "]" if nodeid.endswith(tail) else nodeid


def _ascii(text: str) -> str:
    """pytest escapes non-ASCII ids; ours are ASCII already, so node ids are predictable."""
    return text.encode("ascii", "backslashreplace").decode()


class Explorer:
    """Registered as a pytest plugin once a session explores (or records, or replays)."""

    def __init__(
        self, config: pytest.Config, seed: int | None, results: list[dict[str, Any]]
    ) -> None:
        """``seed``: the run's (``--chaos-seed``...), if any; ``results``: where each run's
        outcome goes (the plugin reports them, from xdist workers too)."""
        self.config = config
        self.explore_all = bool(config.getoption("chaos_explore"))
        self.max_runs = _whole(config.getoption("chaos_explore_max"), "--chaos-explore-max", 0)
        depth = _whole(config.getoption("chaos_explore_depth"), "--chaos-explore-depth", 1)
        if depth is not None and depth > 2:
            raise pytest.UsageError("--chaos-explore-depth: 1 (single calls) or 2 (pairs)")
        self.depth = depth or 1
        self.record_path: str | None = config.getoption("chaos_explore_record")
        token = config.getoption("chaos_replay")
        try:
            self.replay = Run.from_token(token) if token else None
        except ValueError as exc:
            raise pytest.UsageError(f"--chaos-replay: {exc}") from None
        self.seed = ex.DEFAULT_SEED if seed is None else seed
        self.results = results
        self._rundir: Path | None = None
        self._recordings: dict[Path, dict[str, Any]] = {}
        self._recorded: dict[str, dict[str, Any]] = {}  # recording mode: nodeid -> calls
        self._selected: set[tuple[str, str]] = set()
        self._order: dict[str, int] = {}

    # ------------------------------------------------------------------ which tests

    def wants(self, node: Any, fixturenames: Any) -> bool:
        """Explore this test: it has the marker, or ``--chaos-explore`` and the fixture."""
        if node.get_closest_marker(MARKER) is not None:
            return True
        return self.explore_all and "chaos_proxy" in fixturenames

    def settings_of(self, node: Any) -> tuple[tuple[str, ...], Settings, int | None]:
        """The menu, settings and budget of one test (its marker, then the command line)."""
        marker = node.get_closest_marker(MARKER)
        kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
        where = f"@pytest.mark.{MARKER} on {node.nodeid}"
        unknown = sorted(set(kwargs) - set(MARKER_ARGS))
        if marker is not None and (marker.args or unknown):
            pytest.fail(
                f"{where}: takes keyword arguments only ({', '.join(MARKER_ARGS)}); "
                f"got {', '.join(unknown) or f'{len(marker.args)} positional'}",
                pytrace=False,
            )
        try:
            menu, attempts, key = ex.check_settings(
                kwargs.get("faults"), kwargs.get("attempts", "all"), kwargs.get("key"), where
            )
            max_runs = _whole(kwargs.get("max"), f"{where}: max", 0) if "max" in kwargs else None
        except (ValueError, pytest.UsageError) as exc:
            pytest.fail(str(exc), pytrace=False)
        settings = Settings(
            attempts=attempts,
            key=key,
            latency=str(kwargs.get("latency", Settings.latency)),
            hang=str(kwargs.get("hang", Settings.hang)),
            retry_after=int(kwargs.get("retry_after", Settings.retry_after)),
        )
        return menu, settings, max_runs if max_runs is not None else self.max_runs

    # ------------------------------------------------------------------ collection

    def generate(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize a test to explore with its runs (fault-free first)."""
        if (
            self.replay is not None
            or self.record_path
            or not self.wants(metafunc.definition, metafunc.fixturenames)
        ):
            return
        menu, settings, max_runs = self.settings_of(metafunc.definition)
        base = metafunc.definition.nodeid
        recorded = self.recording(metafunc.definition.path)
        variants = {n: r for n, r in recorded.items() if n == base or n.startswith(base + "[")}
        if not variants:
            if self._selected_in(metafunc.definition.path) != [str(metafunc.definition.path)]:
                return  # not among the tests the command line names: not run either
            pytest.fail(f"explore: the recording run did not run {base}", pytrace=False)
        calls: list[Call] = []
        for rec in variants.values():
            calls += [c for c in map(Call.from_list, rec["calls"]) if c not in calls]
        if any(rec["outcome"] != "passed" for rec in variants.values()):
            runs, over = [Run(base, settings=settings, seed=self.seed)], 0  # nothing to explore
        else:
            runs, over = ex.plan(
                base, calls, menu, settings, seed=self.seed, max_runs=max_runs, depth=self.depth
            )
        runs[0] = _Baseline.of(runs[0], calls, menu, over, variants)
        metafunc.parametrize(PARAM, runs, indirect=True, ids=[_ascii(r.id) for r in runs])

    def recording(self, path: Path) -> dict[str, Any]:
        """What the module's tests to explore did, fault-free: recorded once per session."""
        if path in self._recordings:
            return self._recordings[path]
        rundir = self.rundir()
        name = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        out = rundir / f"{name}.json"
        with open(rundir / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: the first records, others wait
            if not out.exists():
                self._record(path, out)
        found: dict[str, Any] = json.loads(out.read_text())
        self._recordings[path] = found
        return found

    def _record(self, path: Path, out: Path) -> None:
        config = self.config
        tmp = out.with_suffix(".tmp")
        cmd = [
            sys.executable, "-m", "pytest", *self._selected_in(path), "-q", "--no-header",
            "-p", "no:randomly",
            "--chaos-explore-record", str(tmp), "--rootdir", str(config.rootpath),
            "-o", f"cache_dir={out.parent / 'cache'}",  # the user's --lf data stays as it is
        ]  # fmt: skip
        if config.inipath is not None:
            cmd += ["-c", str(config.inipath)]
        if config.pluginmanager.hasplugin("xdist"):
            cmd += ["-n", "0"]
        if self.explore_all:
            cmd.append("--chaos-explore")
        for dest in _RECORD_OPTIONS:
            value = config.getoption(dest)
            if value is not None:
                cmd += [f"--{dest.replace('_', '-')}", str(value)]
        cmd += _plugin_args(config.invocation_params.args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
        env.pop("PYTEST_CURRENT_TEST", None)
        done = subprocess.run(
            cmd, cwd=config.invocation_params.dir, env=env, capture_output=True, text=True
        )
        if done.returncode not in (0, 1) or not tmp.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            pytest.fail(
                f"explore: the fault-free recording run of {path} ended with exit code "
                f"{done.returncode}:\n{tail}",
                pytrace=False,
            )
        tmp.replace(out)

    def _selected_in(self, path: Path) -> list[str]:
        """What the recording runs of a module: the tests the command line names in it
        (``test_shop.py::test_page``), else the whole module."""
        picked: list[str] = []
        for arg in self.config.args:
            file, sep, rest = arg.partition("::")
            if Path(self.config.invocation_params.dir, file).resolve() == path.resolve():
                if not sep:
                    return [str(path)]
                picked.append(f"{path}::{rest}")
        return picked or [str(path)]

    def rundir(self) -> Path:
        """This session's folder (shared by its xdist workers)."""
        if self._rundir is None:
            workerinput = getattr(self.config, "workerinput", None)
            runid = workerinput["testrunuid"] if workerinput else uuid.uuid4().hex
            cache = getattr(self.config, "cache", None)
            if cache is not None:
                base = Path(cache.mkdir("chaosproxy-explore"))
            else:
                base = Path(tempfile.gettempdir()) / "chaosproxy-explore"
            _prune(base)
            self._rundir = base / runid
            (self._rundir / "results").mkdir(parents=True, exist_ok=True)
        return self._rundir

    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if self.record_path:
            keep = [i for i in items if self.wants(i, getattr(i, "fixturenames", ()))]
            dropped = [i for i in items if i not in keep]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
                items[:] = keep
            return
        if self.replay is not None:
            if not any(i.nodeid == self.replay.nodeid for i in items):
                raise pytest.UsageError(
                    f"--chaos-replay: the token replays {self.replay.nodeid}, which is not "
                    "among the tests selected: run `pytest "
                    f"{self.replay.nodeid} --chaos-replay TOKEN`"
                )
            return
        explored: dict[tuple[Any, ...], str] = {}
        for index, item in enumerate(items):
            run = _run_of(item)
            if run is None:
                continue
            base = base_nodeid(item.nodeid, run)
            self._order[item.nodeid] = index
            self._selected.add((base, run.id))
            if run.kind == "baseline":
                continue
            first = explored.setdefault(run.identity, base)
            if first != base:
                item.stash[_run_key] = replace(run, repeat_of=first)

    # ------------------------------------------------------------------ the fixture

    def begin(self, fixture: ExploredFixture, item: pytest.Item, run: Run | None) -> bool:
        """Set the proxy up for this test; True when exploration decides its scenario."""
        targeting = _targeting(fixture)
        if self.record_path:
            settings = self.settings_of(item)[1]
            targeting.begin(None, settings.key)
            item.stash[_state_key] = _ItemState(None, targeting)
            return True
        if self.replay is not None and item.nodeid == self.replay.nodeid:
            run = self.replay
        run = item.stash.get(_run_key, run)
        if run is None:
            targeting.end()  # a test exploration leaves alone
            return False
        base = base_nodeid(item.nodeid, run)
        fixture.apply(run.scenario(), seed=run.seed)
        if run.targets:
            fixture.replay = f"pytest {base} --chaos-replay {replace(run, nodeid=base).token()}"
        targeting.begin(run.targets if run.targets else None, run.settings.key)
        item.stash[_state_key] = _ItemState(run, targeting)
        return True

    def end(self, fixture: ExploredFixture, item: pytest.Item) -> None:
        state = item.stash.get(_state_key, None)
        if state is None:
            return
        calls = state.targeting.end()
        if self.record_path:
            self._recorded.setdefault(item.nodeid, {"outcome": "passed"})["calls"] = [
                c.to_list() for c in calls
            ]

    # ------------------------------------------------------------------ running

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        run = _run_of(item)
        if run is None or run.kind == "baseline":
            return
        if run.repeat_of is not None:
            pytest.skip(f"explore: repeat of a run of {run.repeat_of}")
        base = base_nodeid(item.nodeid, run)
        made = {c for c in self._calls_of(item, base)}
        if made and not set(run.targets) <= made:
            pytest.skip(f"explore: {base} does not make {run.calls}")
        if run.kind == "pair":
            for single in ex.singles_of(run):
                if self._result_of(base, single) == "failed":
                    pytest.skip(f"explore: {single.calls} x {run.fault} already fails alone")

    def _calls_of(self, item: pytest.Item, base: str) -> list[Call]:
        recorded = self._recordings.get(Path(item.path), {})
        return [Call.from_list(c) for c in recorded.get(base, {}).get("calls", [])]

    def _result_of(self, base: str, single: Run) -> str | None:
        """A single run's status, waiting for it when it is part of this session."""
        if (base, single.id) not in self._selected:
            return None
        path = self._result_path(base, single)
        deadline = time.monotonic() + PAIR_WAIT
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return json.loads(path.read_text())["status"] if path.exists() else None

    def _result_path(self, base: str, run: Run) -> Path:
        name = hashlib.sha256(f"{base}\0{run.id}".encode()).hexdigest()[:24]
        return self.rundir() / "results" / f"{name}.json"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield
        state = item.stash.get(_state_key, None)
        if state is not None and state.run is not None:
            state.reached = set(state.targeting.reached)
            if state.run.kind == "single" and not state.reached:
                pytest.fail(
                    f"explore: {state.run.calls} was not requested in this run (the fault-free "
                    "recording made it): the test's calls change from run to run; explore "
                    "with key='header:NAME' to tell them apart by a stable header",
                    pytrace=False,
                )
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if self.record_path:
            if report.when == "call" or report.failed:
                entry = self._recorded.setdefault(item.nodeid, {"calls": []})
                if report.failed or "outcome" not in entry or entry["outcome"] == "passed":
                    entry["outcome"] = report.outcome
            return report
        run = _run_of(item)
        if run is None or not (report.when == "call" or report.outcome != "passed"):
            return report
        if report.when == "teardown" and report.outcome != "failed":
            return report
        self._note(item, run, report, call)
        return report

    def _note(
        self, item: pytest.Item, run: Run, report: pytest.TestReport, call: pytest.CallInfo[None]
    ) -> None:
        base = base_nodeid(item.nodeid, run)
        state = item.stash.get(_state_key, None)
        message = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed and call.excinfo is not None:
            message = ex.first_line(call.excinfo.exconly())
        token = replace(run, nodeid=base, repeat_of=None).token()
        entry: dict[str, Any] = {
            "test": base,
            "item": item.nodeid,
            "order": self._order.get(item.nodeid, 0),
            "run": run.id,
            "kind": run.kind,
            "calls": list(run.names),
            "fault": run.fault,
            "status": report.outcome,
            "when": report.when,
            "message": message,
            "reached": sorted(
                n
                for t, n in zip(run.targets, run.names, strict=True)
                if state and t in state.reached
            ),
        }
        if run.kind != "baseline":
            entry["token"] = token
            entry["replay"] = f"pytest {base} --chaos-replay {token}"
        if isinstance(run, _Baseline):
            entry.update(run.summary)
        self.results.append(entry)
        if run.kind == "single" and report.when in ("call", "setup"):
            path = self._result_path(base, run)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"status": report.outcome}))
            tmp.replace(path)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.record_path:
            Path(self.record_path).write_text(json.dumps(self._recorded, indent=1))


class _Baseline(Run):
    """The fault-free run, carrying what the report says about the test as a whole."""

    summary: dict[str, Any]

    @classmethod
    def of(
        cls,
        run: Run,
        calls: list[Call],
        menu: tuple[str, ...],
        over: int,
        variants: dict[str, Any],
    ) -> _Baseline:
        baseline = cls(**run.__dict__)
        names = ex.labels(calls)
        failed = [n for n, rec in variants.items() if rec["outcome"] != "passed"]
        object.__setattr__(
            baseline,
            "summary",
            {
                "recorded": [names[c] for c in calls],
                "menu": list(menu),
                "over_budget": over,
                "recording_failed": failed,
            },
        )
        return baseline


def _run_of(item: pytest.Item) -> Run | None:
    run = item.stash.get(_run_key, None)
    if run is not None:
        return run
    callspec = getattr(item, "callspec", None)
    found = callspec.params.get(PARAM) if callspec is not None else None
    return found if isinstance(found, Run) else None


def _targeting(fixture: ExploredFixture) -> Targeting:
    """The proxy's decider, wrapped once so that exploration sees and steers each request."""
    addon = fixture.proxy.addon
    if not isinstance(addon.decider, Targeting):
        addon.decider = Targeting(addon.decider)
    targeting: Targeting = addon.decider
    return targeting


def _whole(value: object, where: str, minimum: int) -> int | None:
    if value is None:
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise pytest.UsageError(f"{where}: {value!r} is not a whole number >= {minimum}")
    return number


def _plugin_args(args: tuple[str, ...]) -> list[str]:
    """The ``-p NAME`` options of the command line, for the recording run."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "-p" and i + 1 < len(args):
            out += ["-p", args[i + 1]]
        elif arg.startswith("-p") and len(arg) > 2:
            out.append(arg)
    return out


def _prune(base: Path, older_than: float = 86400.0) -> None:
    """Forget the recordings of sessions over a day old."""
    if not base.is_dir():
        return
    now = time.time()
    for old in base.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > older_than:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
