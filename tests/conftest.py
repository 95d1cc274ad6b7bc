"""Shared fixtures, and the test tiers.

Every test is exactly one of ``unit`` (in process: no subprocess, no listening or
connected network socket), ``wire`` (real sockets, usually through a proxy) or ``e2e``
(subprocesses, a browser, compose); ``slow`` comes on top. A test takes the tier of the
closest entry in ``TIERS`` (its file, else its folder) unless it carries a tier marker of
its own; a test with no tier, or two, stops the collection. A ``unit`` test that listens
on or connects a network socket, or starts a subprocess, fails saying so. ``pytest -m
unit`` runs the unit tier; ``make test`` runs everything.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from tests.support import UpstreamServer, running_upstream

# Property tests draw the same examples on every run (a test may still ask for more)
settings.register_profile("chaosproxy", derandomize=True, deadline=None)
settings.load_profile("chaosproxy")

if TYPE_CHECKING:
    from chaosproxy.testing.api import ChaosProxy

pytest_plugins = ["pytester"]

TIER_NAMES = ("unit", "wire", "e2e")

#: the tier of the tests in a folder or file (relative to the repository); the closest wins
TIERS: dict[str, str] = {
    "tests/core": "unit",
    "tests/faults": "unit",
    "tests/testing": "unit",
    "tests/proxy_addons": "unit",
    "tests/proxy_addons/test_lean.py": "e2e",
    "tests/proxy_addons/test_internals.py": "e2e",
    "tests/control": "unit",
    "tests/state": "unit",
    "tests/state/test_shared_redis.py": "wire",
    "tests/control/test_http.py": "wire",
    "tests/control/test_client.py": "wire",
    "tests/cli": "unit",
    "tests/cli/test_cli.py": "e2e",
    "tests/cli/test_cli_control.py": "e2e",
    "tests/demo": "unit",
    "tests/demo/test_integration.py": "wire",
    "tests/demo/test_demo_command.py": "e2e",
    "tests/demo/test_browser.py": "e2e",
    "tests/demo/test_assessment.py": "e2e",
    "tests/demo/test_compose.py": "e2e",
    "tests/integration": "wire",
    "tests/integration/test_mitmdump_control.py": "e2e",
    "tests/integration/test_mitmdump_script.py": "e2e",
    "tests/integration/test_run_body_faults.py": "e2e",
    "tests/integration/test_workers.py": "e2e",
    "tests/integration/test_shared_state.py": "e2e",
    "tests/resilience": "wire",
    "tests/assess": "wire",
    "tests/reliability": "wire",
    "tests/reliability/test_soak.py": "e2e",
    "tests/reliability/test_stream_soak.py": "e2e",
    "tests/plugin": "e2e",
    "tests/deploy": "e2e",
    "tests/deploy/test_configmap_watch.py": "unit",
    "tests/docs": "unit",
    "tests/docs/test_examples.py": "e2e",
    "tests/docs/test_node_forward.py": "e2e",
    "tests/docs/test_site.py": "e2e",
    "tests/test_bench.py": "unit",
    "tests/test_packaging.py": "e2e",
    "tests/test_tiers.py": "e2e",
    "tests/test_architecture.py": "unit",
    "tests/assess/test_card.py": "unit",
    "tests/assess/test_html.py": "unit",
    "tests/assess/test_html_browser.py": "e2e",
}

#: slow tests (more than ~30 s each on a loaded 2-core machine): folders, files or node ids
SLOW: set[str] = {
    "tests/plugin",  # each runs a pytest session with proxies in a subprocess
    "tests/reliability/test_soak.py",
    "tests/demo/test_browser.py",
    "tests/test_bench.py::test_quick_run_end_to_end",
}

ROOT = Path(__file__).resolve().parent.parent


def _closest(table: dict[str, Any], path: Path) -> Any:
    try:
        parts = path.resolve().relative_to(ROOT).parts
    except ValueError:  # a test outside the repository (pytester's)
        return None
    for n in range(len(parts), 0, -1):
        key = "/".join(parts[:n])
        if key in table:
            return table[key]
    return None


def tier_of(item: pytest.Item) -> str | None:
    """The tier the test is in (after collection), or None."""
    names = {m.name for m in item.iter_markers() if m.name in TIER_NAMES}
    return names.pop() if len(names) == 1 else None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems: list[str] = []
    for item in items:
        path = Path(str(item.path))
        if _closest(TIERS, path) is None and not path.resolve().is_relative_to(ROOT / "tests"):
            continue  # not one of ours (pytester's inner sessions)
        explicit = sorted({m.name for m in item.iter_markers() if m.name in TIER_NAMES})
        if len(explicit) > 1:
            problems.append(f"{item.nodeid}: more than one tier ({', '.join(explicit)})")
        elif not explicit:
            tier = _closest(TIERS, path)
            if tier is None:
                problems.append(
                    f"{item.nodeid}: no tier: mark it unit, wire or e2e, or add its folder "
                    "to TIERS in tests/conftest.py"
                )
                continue
            item.add_marker(tier)
        if any(item.nodeid == s or item.nodeid.startswith((s + "/", s + "::")) for s in SLOW):
            item.add_marker("slow")
    if problems:
        raise pytest.UsageError("test tiers:\n  " + "\n  ".join(problems))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With exactly ``-m unit``, skip importing files that cannot hold a unit test (their
    tier is another and the text never says ``mark.unit``): the tier starts in seconds.
    tests/test_tiers.py checks it collects the same tests as ``-m "unit or unit"``."""
    if config.option.markexpr.strip() != "unit" or collection_path.suffix != ".py":
        return None
    tier = _closest(TIERS, collection_path)
    if tier is None or tier == "unit" or not collection_path.name.startswith("test_"):
        return None
    return "mark.unit" not in collection_path.read_text(encoding="utf-8")


# --------------------------------------------------------------- unit tests stay in process


class _InProcessOnly:
    """Record what a unit test does that makes it not one: a subprocess, a network socket."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._saved: list[tuple[Any, str, Any]] = []
        self._threads: set[int] = set()

    def _ours(self) -> bool:
        t = threading.current_thread()
        return t is threading.main_thread() or t.ident not in self._threads

    def _wrap(self, owner: Any, name: str, what: Callable[..., str | None]) -> None:
        original = getattr(owner, name)
        guard = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            found = what(*args, **kwargs)
            if found and guard._ours():
                guard.seen.append(found)
            return original(*args, **kwargs)

        self._saved.append((owner, name, original))
        setattr(owner, name, wrapper)

    def __enter__(self) -> _InProcessOnly:
        self._threads = {t.ident for t in threading.enumerate() if t.ident is not None}
        self._threads.discard(threading.main_thread().ident)

        def popen(_self: Any, args: Any, *a: Any, **k: Any) -> str:
            return f"starts a subprocess ({str(args)[:120]})"

        def net(verb: str) -> Callable[..., str | None]:
            def check(sock: socket.socket, *args: Any) -> str | None:
                if sock.family not in (socket.AF_INET, socket.AF_INET6):
                    return None
                where = args[0] if verb == "connects" else sock.getsockname()
                return f"{verb} a network socket ({where!r})"

            return check

        self._wrap(subprocess.Popen, "__init__", popen)
        # binding alone (picking a free port) stays in process; listening or connecting not
        for name, verb in (
            ("connect", "connects"),
            ("connect_ex", "connects"),
            ("listen", "listens on"),
        ):
            self._wrap(socket.socket, name, net(verb))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)


_GUARD = pytest.StashKey[list[str]]()


def _guarded(item: pytest.Item) -> Generator[None, Any, Any]:
    if tier_of(item) != "unit":
        return (yield)
    with _InProcessOnly() as guard:
        try:
            return (yield)
        finally:
            item.stash.setdefault(_GUARD, []).extend(guard.seen)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    result = yield from _guarded(item)
    seen = item.stash.get(_GUARD, [])
    if seen:
        pytest.fail(
            f"marked unit, but it {seen[0]}"
            + (f" (and {len(seen) - 1} more)" if len(seen) > 1 else "")
            + ": mark it wire or e2e (see tests/conftest.py)",
            pytrace=False,
        )
    return result


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def upstream() -> Iterator[UpstreamServer]:
    """A local upstream shared by the session (see tests/support.py for its endpoints)."""
    with running_upstream() as server:
        yield server


@pytest.fixture
def make_proxy(upstream: UpstreamServer) -> Iterator:
    """Start in-process proxies in front of the test upstream; all stopped afterwards."""
    from chaosproxy.testing.api import ChaosProxy

    started: list[ChaosProxy] = []

    def make(scenario=None, seed: int | None = None, **kwargs) -> ChaosProxy:
        kwargs.setdefault("upstream", None if kwargs.get("forward") else upstream.url)
        proxy = ChaosProxy(scenario=scenario, seed=seed, **kwargs).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
