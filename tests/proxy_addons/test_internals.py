"""The seam (proxy_addons/_internals): every patch of mitmproxy applies on the installed
mitmproxy, one whose target is missing warns once and leaves stock behaviour, and the
active ones are listed by ``GET /healthz`` and ``chaosproxy run -v``.

Each check runs in a fresh interpreter: patches are process-wide and applied once.
Run this file on Python 3.11 / mitmproxy 11 and on Python 3.12 / mitmproxy 12.
"""

from __future__ import annotations

import os
import pkgutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import mitmproxy.version
import pytest
import requests

from chaosproxy.proxy_addons import _internals
from tests.cli.test_cli import EXE, listening
from tests.support import UpstreamServer, free_port, python_json, wait_until

ROOT = Path(__file__).resolve().parents[2]
GROUPS = (
    _internals.LEAN
    + _internals.PROXY
    + _internals.ADDON
    + _internals.MASTER
    + _internals.LISTENING
    + _internals.WORKER
)


def test_every_patch_module_declares_its_patch_under_its_name() -> None:
    folder = Path(_internals.__file__).parent
    modules = {m.name for m in pkgutil.iter_modules([str(folder)])}
    assert modules == set(_internals.MODULES.values())
    for name in _internals.MODULES:
        patch = _internals.declaration(name)
        assert patch.name == name and patch.target and patch.fallback
    assert sorted(GROUPS) == sorted(_internals.MODULES)  # each is applied somewhere, once


# --------------------------------------------------------------------------- all applied

_APPLY_ALL = """
    import json, logging, socket, sys
    import requests
    from chaosproxy.proxy_addons import _internals

    warnings = []
    class Catch(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())
    logging.getLogger("chaosproxy").addHandler(Catch())

    lean = _internals.lean_start()  # as `chaosproxy run` does, before mitmproxy is imported
    onboarding = "mitmproxy.addons.onboarding" in sys.modules
    worker = _internals.apply(_internals.WORKER)
    from chaosproxy.testing.api import ChaosProxy
    from tests.support import running_upstream

    scenario = {"name": "s", "rules": [
        {"name": "slow", "match": {"path": "/slow"}, "fault": {"type": "latency", "delay": "100ms"}},
        {"name": "rst", "match": {"path": "/rst"}, "fault": {"type": "abort", "how": "reset"}},
    ]}
    with running_upstream() as up, ChaosProxy(upstream=up.url, scenario=scenario, admin=True) as p:
        statuses = [requests.get(p.url + path, timeout=10).status_code for path in ("/a", "/slow")]
        try:
            requests.get(p.url + "/rst", timeout=10)
            reset = "answered"
        except requests.ConnectionError as exc:
            reset = "reset" if "reset" in str(exc).lower() else f"closed: {exc}"
        health = requests.get(p.admin_url + "/healthz", timeout=10).json()
    checks = {p.name: _internals._problem(p.check) for p in _internals.declarations()}
    print(json.dumps({
        "lean": lean, "onboarding": onboarding, "worker": worker, "statuses": statuses,
        "reset": reset, "health": health, "active": _internals.active(),
        "failed": _internals.failed(), "checks": checks, "warnings": warnings,
    }))
"""


@pytest.fixture(scope="module")
def applied_all() -> Any:
    return python_json(_APPLY_ALL)


@pytest.mark.parametrize("name", list(_internals.MODULES))
def test_patch_applies_on_the_installed_mitmproxy(name: str, applied_all: Any) -> None:
    where = f"mitmproxy {mitmproxy.version.VERSION}, Python {sys.version.split()[0]}"
    assert applied_all["checks"][name] is None, f"{name} on {where}"
    assert name in applied_all["active"], f"{name} on {where}: {applied_all['failed']}"
    assert name in applied_all["health"]["patches"]
    assert not [w for w in applied_all["warnings"] if name in w]


def test_a_proxy_with_every_patch_serves_and_resets(applied_all: Any) -> None:
    assert applied_all["lean"] == list(_internals.LEAN)
    assert applied_all["worker"] == list(_internals.WORKER)
    assert applied_all["onboarding"] is False
    assert applied_all["statuses"] == [200, 200]
    assert applied_all["reset"] == "reset"  # client_sockets: a real TCP RST
    assert applied_all["health"]["status"] == "ok" and applied_all["warnings"] == []
    assert applied_all["failed"] == {}


# --------------------------------------------------------------------------- target missing

#: patch -> (code that takes its target away, code that is True when mitmproxy is stock)
MISSING = {
    "lazy_default_addons": (
        "import mitmproxy.addons",
        "len(mitmproxy.addons.default_addons()) > 20",
    ),
    "no_debug_typechecks": (
        "from mitmproxy import http; gone(http.MessageData, '__post_init__')",
        "'__post_init__' not in vars(http.MessageData)",
    ),
    "header_lookups": (
        "from mitmproxy.utils import strutils; from mitmproxy import http; "
        "gone(strutils, 'always_bytes')",
        "not hasattr(http.Headers.get_all, '_chaosproxy')",
    ),
    "option_reads": (
        "from mitmproxy import optmanager; gone(optmanager, 'unset')",
        "not hasattr(optmanager._Option.current, '_chaosproxy')",
    ),
    "free_finished_streams": (
        "from mitmproxy.proxy.layers import http as lh; gone(lh.HttpStream, 'state_errored')",
        "not hasattr(lh.HttpLayer.__init__, '_chaosproxy')",
    ),
    "early_upstream": (
        "from mitmproxy.proxy import server; "
        "server.ConnectionHandler.open_connection = lambda self, command: None",
        "not warmup._installed and warmup.prepare('c', ('h', 1), 2e9) is None "
        "and not warmup._early",
    ),
    "settle_heap": (
        "import gc; gone(gc, 'freeze')",
        "_internals.settle_heap() is False",
    ),
    "ctx_per_thread": (
        "import types, mitmproxy.ctx; "
        "sys.modules['mitmproxy.ctx'].__class__ = type('Other', (types.ModuleType,), {})",
        "type(sys.modules['mitmproxy.ctx']).__name__ == 'Other'",
    ),
    "client_sockets": (
        "from mitmproxy.proxy import server; gone(server, 'ConnectionIO')",
        "clientsock.connection_handler(fake_master, 'c') is None "
        "and clientsock.connection_handlers(fake_master) == []",
    ),
    "receive_times": (
        "from mitmproxy.proxy import server; gone(server, 'ConnectionIO')",
        "receivetimes.arrival_of(object()) is None",
    ),
    "stop_listeners": (
        "from mitmproxy.addons import proxyserver; gone(proxyserver, 'Servers')",
        "asyncio.run(listeners.stop_listening(fake_master)) is False",
    ),
    "fast_hooks": (
        "from mitmproxy.proxy import server; gone(server.TimeoutWatchdog, 'disarm')",
        "fake_master.addons.added == []",
    ),
    "listen_backlog": (
        "from mitmproxy.proxy import mode_servers; gone(mode_servers, 'AsyncioServerInstance')",
        "fake_master.addons.added == []",
    ),
    "reuse_port": (
        "import socket; gone(socket, 'SO_REUSEPORT')",
        "not hasattr(asyncio.start_server, '_chaosproxy')",
    ),
    "timed_out_answers": (
        "from mitmproxy.proxy.layers import http as lh; gone(lh.HttpStream, 'send_response')",
        "not hasattr(lh.HttpStream.handle_protocol_error, '_chaosproxy')",
    ),
    "h2_for_h2_clients": (
        "from mitmproxy.addons import tlsconfig; gone(tlsconfig, 'alpn_select_callback')",
        "not hasattr(tlsconfig.TlsConfig.tls_start_client, '_chaosproxy')",
    ),
    "websocket_close": (
        "from mitmproxy.proxy.layers import websocket as lw; gone(lw, 'WebSocketMessageInjected')",
        "not hasattr(lw.WebsocketLayer.__init__, '_chaosproxy')",
    ),
    "truncated_chunks": (
        "from mitmproxy.proxy.layers.http import _http1; "
        "_http1.Http1Server.send = lambda self, event: iter(())",
        "not chunkframing.usable()",
    ),
}

_MISSING = """
    import asyncio, json, logging, sys
    from chaosproxy.proxy_addons import _internals
    from chaosproxy.proxy_addons._internals import (
        chunkframing, clientsock, listeners, receivetimes, warmup
    )

    warnings = []
    class Catch(logging.Handler):
        def emit(self, record):
            warnings.append((record.levelname, record.getMessage()))
    logging.getLogger("chaosproxy").addHandler(Catch())

    def gone(owner, name):
        delattr(owner, name)

    class Addons:
        def __init__(self):
            self.added = []
        def add(self, *addons):
            self.added.extend(addons)
        def get(self, name):
            class PS:
                connections = {"c": object()}
                servers = []
            return PS()
    class FakeMaster:
        addons = Addons()
    fake_master = FakeMaster()

    name = sys.argv[1]
    exec(sys.argv[2])
    first = _internals.apply([name], master=fake_master)
    again = _internals.apply([name], master=fake_master)
    stock = bool(eval(sys.argv[3]))
    print(json.dumps({"first": first, "again": again, "stock": stock, "warnings": warnings,
                      "failed": _internals.failed(), "active": _internals.active()}))
"""


@pytest.mark.parametrize("name", list(MISSING))
def test_a_patch_whose_target_is_missing_warns_once_and_leaves_mitmproxy_stock(name: str) -> None:
    assert set(MISSING) == set(_internals.MODULES)
    take_away, stock = MISSING[name]
    result = python_json(_MISSING, name, take_away, stock)
    assert result["first"] == [] and result["again"] == []
    assert result["stock"], f"{name}: mitmproxy was changed anyway"
    assert name in result["failed"] and name not in result["active"]
    assert len(result["warnings"]) == 1, result["warnings"]
    level, message = result["warnings"][0]
    assert level == "WARNING"
    assert message.startswith(f"mitmproxy patch {name} is off: ")
    assert result["failed"][name] in message
    assert _internals.declaration(name).fallback in message


def test_a_patch_whose_apply_fails_warns_once_and_is_not_listed() -> None:
    result = python_json(
        """
        import json, logging
        from chaosproxy.proxy_addons import _internals
        seen = []
        logging.getLogger("chaosproxy").addHandler(
            type("H", (logging.Handler,), {"emit": lambda self, r: seen.append(r.getMessage())})()
        )
        # fast_hooks applies to a master: without one its apply raises
        print(json.dumps([_internals.apply(["fast_hooks"]), _internals.apply(["fast_hooks"]),
                          _internals.active(), seen]))
        """
    )
    first, again, active, seen = result
    assert first == again == active == []
    assert len(seen) == 1 and "applying it failed (ValueError" in seen[0]


def test_a_patch_whose_module_does_not_import_warns_once_and_the_others_apply() -> None:
    """fasthooks imports mitmproxy at its top: a moved mitmproxy module is an ImportError
    there (simulated: None in sys.modules makes its import raise one)."""
    result = python_json(
        """
        import json, logging, sys
        from chaosproxy.proxy_addons import _internals
        seen = []
        logging.getLogger("chaosproxy").addHandler(
            type("H", (logging.Handler,), {"emit": lambda self, r: seen.append(r.getMessage())})()
        )
        sys.modules["chaosproxy.proxy_addons._internals.fasthooks"] = None
        first = _internals.apply(["fast_hooks", "header_lookups"], master=object())
        again = _internals.apply(["fast_hooks"], master=object())
        print(json.dumps([first, again, _internals.active(), _internals.failed(), seen]))
        """
    )
    first, again, active, failed, seen = result
    assert first == ["header_lookups"] and again == [] and active == ["header_lookups"]
    assert list(failed) == ["fast_hooks"] and "Error: import of" in failed["fast_hooks"]
    assert len(seen) == 1, seen
    assert seen[0].startswith("mitmproxy patch fast_hooks is off: its module did not load")


def test_a_proxy_without_the_client_sockets_closes_instead_of_resetting() -> None:
    """Stock behaviour, never a crash: the client_sockets check fails (simulated by its
    declaration: mitmproxy itself needs the names the check looks at)."""
    result = python_json(
        """
        import dataclasses, json, logging
        import requests
        from chaosproxy.proxy_addons import _internals
        from chaosproxy.proxy_addons._internals import clientsock
        from chaosproxy.testing.api import ChaosProxy
        from tests.support import running_upstream

        seen = []
        logging.getLogger("chaosproxy").addHandler(
            type("H", (logging.Handler,), {"emit": lambda self, r: seen.append(r.getMessage())})()
        )
        clientsock.PATCH = dataclasses.replace(
            clientsock.PATCH, check=lambda: "ConnectionIO has no writer (simulated)"
        )
        scenario = {"name": "s", "rules": [
            {"name": "rst", "match": {"path": "/rst"}, "fault": {"type": "abort", "how": "reset"}},
        ]}
        outcomes = []
        with running_upstream() as up, ChaosProxy(upstream=up.url, scenario=scenario) as p:
            for path in ("/rst", "/ok", "/rst"):
                try:
                    outcomes.append(requests.get(p.url + path, timeout=10).status_code)
                except requests.ConnectionError as exc:
                    outcomes.append("reset" if "reset" in str(exc).lower() else "closed")
            outcome = [r.outcome for r in p.decisions if r.rule]
        print(json.dumps([outcomes, outcome, _internals.active(), seen]))
        """
    )
    outcomes, recorded, active, seen = result
    assert outcomes == ["closed", 200, "closed"]
    assert recorded == ["closed", "closed"]
    assert "client_sockets" not in active and "receive_times" not in active
    patch_warnings = [w for w in seen if w.startswith("mitmproxy patch")]
    assert [w.split(" is off")[0] for w in patch_warnings] == [
        "mitmproxy patch client_sockets",
        "mitmproxy patch receive_times",
    ]


def test_truncated_without_the_chunk_framing_it_relies_on_resets_instead() -> None:
    """stream_cut mode truncated, when mitmproxy's HTTP/1 framing is not the shape it
    relies on (simulated by its declaration): one warning, and the stream ends with a TCP
    reset right after the point, never a clean end or a chunk framed twice."""
    result = python_json(
        """
        import dataclasses, json, logging
        from chaosproxy.proxy_addons import _internals
        from chaosproxy.proxy_addons._internals import chunkframing
        from chaosproxy.testing.api import ChaosProxy
        from tests.integration.sse_upstream import sse_pieces, sse_upstream
        from tests.integration.test_stream_faults_wire import raw_get
        from tests.support import wait_until

        seen = []
        logging.getLogger("chaosproxy").addHandler(
            type("H", (logging.Handler,), {"emit": lambda self, r: seen.append(r.getMessage())})()
        )
        chunkframing.PATCH = dataclasses.replace(
            chunkframing.PATCH, check=lambda: "Http1Server.send frames otherwise (simulated)"
        )
        scenario = {"name": "s", "rules": [{"name": "cut", "fault":
                    {"type": "stream_cut", "events": 2, "mode": "truncated"}}]}
        with sse_upstream() as up, ChaosProxy(upstream=up.url, scenario=scenario) as p:
            raw = raw_get(p.port, "/sse?events=6")
            end = [raw.chunks == sse_pieces(2), raw.end, raw.partial]
            wait_until(lambda: any(r.rule for r in p.decisions))
            outcomes = [r.outcome for r in p.decisions if r.rule]
        print(json.dumps([end, outcomes, _internals.active(), seen]))
        """
    )
    end, outcomes, active, seen = result
    assert end == [True, "reset", None]
    assert outcomes == ["reset"]
    assert "truncated_chunks" not in active and "client_sockets" in active
    patch_warnings = [w for w in seen if w.startswith("mitmproxy patch")]
    assert len(patch_warnings) == 1, seen
    assert patch_warnings[0].startswith("mitmproxy patch truncated_chunks is off: ")
    assert "(simulated)" in patch_warnings[0] and "TCP reset instead" in patch_warnings[0]


# --------------------------------------------------------------------------- listed


def _run(upstream: UpstreamServer, *extra: str, env: dict[str, str] | None = None) -> Any:
    """``chaosproxy run -v``: its /healthz and its log."""
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [EXE, "run", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
         "--admin", f"127.0.0.1:{admin}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        wait_until(lambda: listening(admin) and listening(port), timeout=30)
        health = requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=10)
        assert requests.get(f"http://127.0.0.1:{port}/x", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=20)
    assert health.status_code == 200
    return health.json(), log


def test_run_verbose_logs_the_patches_healthz_lists(upstream: UpstreamServer) -> None:
    health, log = _run(upstream, "-v")
    assert health["status"] == "ok" and health["scenario"]
    expected = [
        *_internals.LEAN,
        *_internals.PROXY,
        *_internals.ADDON,
        *_internals.MASTER,
        *_internals.LISTENING,
    ]
    assert sorted(health["patches"]) == sorted(expected)
    lines = [line for line in log.splitlines() if "mitmproxy patches: " in line]
    assert len(lines) == 1, log
    assert lines[0].split("mitmproxy patches: ")[1] == ", ".join(health["patches"])
    assert "WARNING" not in log


def test_run_with_workers_lists_what_the_workers_patched(upstream: UpstreamServer) -> None:
    health, log = _run(upstream, "-v", "--workers", "2")
    assert sorted(health["patches"]) == sorted(GROUPS)  # reuse_port: in the workers only
    line = next(x for x in log.splitlines() if "mitmproxy patches: " in x)
    assert line.split("mitmproxy patches: ")[1] == ", ".join(health["patches"])


def test_run_without_lean_patches_only_what_it_needs(upstream: UpstreamServer) -> None:
    health, log = _run(upstream, env={_internals.NO_LEAN_ENV: "1"})
    assert sorted(health["patches"]) == sorted(
        [*_internals.PROXY, *_internals.ADDON, *_internals.LISTENING]
    )
    assert "mitmproxy patches" not in log  # listed with -v only


# --------------------------------------------------------------------------- no side effects


def test_importing_chaosproxy_its_plugin_and_the_addon_patches_nothing_starts_nothing() -> None:
    result = python_json(
        """
        import asyncio, json, sys, threading
        import chaosproxy, chaosproxy.testing.plugin, chaosproxy.testing.api
        from chaosproxy.proxy_addons import _internals
        before = sorted(m for m in sys.modules if m.split(".")[0] == "mitmproxy")
        from chaosproxy import ChaosProxy  # the name only
        named = sorted(m for m in sys.modules if m.split(".")[0] == "mitmproxy")
        import chaosproxy.proxy_addons.chaos  # the addon: imports mitmproxy, patches nothing
        import types
        from mitmproxy import http, optmanager
        from mitmproxy.proxy import server
        from mitmproxy.proxy.layers import http as lh
        untouched = {
            "ctx": type(sys.modules["mitmproxy.ctx"]) is types.ModuleType,
            "headers": not hasattr(http.Headers.get_all, "_chaosproxy"),
            "options": not hasattr(optmanager._Option.current, "_chaosproxy"),
            "streams": not hasattr(lh.HttpLayer.__init__, "_chaosproxy"),
            "connect": not hasattr(server.ConnectionHandler.open_connection, "_chaosproxy"),
            "asyncio": server.asyncio is asyncio
                and not hasattr(asyncio.start_server, "_chaosproxy"),
            "typechecks": "__post_init__" in vars(http.MessageData),
        }
        print(json.dumps([before, named, _internals.active(), untouched,
                          threading.active_count()]))
        """
    )
    before, named, active, untouched, threads = result
    assert before == [] and named == []
    assert active == []
    assert all(untouched.values()), untouched
    assert threads == 1


def test_a_pytest_session_that_never_uses_the_fixture_imports_no_mitmproxy(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_plain(request):
            assert request.config.pluginmanager.has_plugin("chaosproxy")
            assert "chaos" in [m.split("(")[0] for m in request.config.getini("markers")]
            mitm = [m for m in sys.modules if m.split(".")[0] == "mitmproxy"]
            assert mitm == []
            heavy = [m for m in ("pydantic", "h11", "chaosproxy.core.scenario") if m in sys.modules]
            assert heavy == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_importing_the_pytest_plugin_costs_under_50_ms() -> None:
    """What a pytest session pays for the plugin: the cumulative import time of
    ``chaosproxy.testing.plugin`` (and what it imports) once pytest itself is loaded, as
    ``python -X importtime`` reports it; the best of three runs (load only adds)."""
    figures = []
    for _ in range(3):
        out = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                "import pytest; import chaosproxy.testing.plugin",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        line = next(x for x in out.stderr.splitlines() if x.endswith("| chaosproxy.testing.plugin"))
        figures.append(int(line.split("|")[1]) / 1000)
    best = min(figures)
    print(f"import chaosproxy.testing.plugin: {best:.1f} ms (runs: {figures})")
    assert best < 50, (
        f"importing the pytest plugin took {best:.1f} ms (best of {figures}): "
        "pytest loads it in every session, it must import no more than pytest and the stdlib"
    )
