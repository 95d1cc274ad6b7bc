"""The cheaper hook dispatch (proxy_addons/_internals/fasthooks.py) keeps mitmproxy's hook
semantics: order, arguments, AddonHalt, logged addon errors, awaited handlers, update hooks,
nested addons; and, through a real proxy, intercepted flows and failing addons."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from mitmproxy import exceptions, hooks, master, options
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from chaosproxy.proxy_addons._internals import fasthooks
from chaosproxy.proxy_addons.chaos import ChaosAddon
from chaosproxy.testing.api import ChaosProxy
from tests.support import UpstreamServer, wait_until


class Recorder:
    """An addon that records the hooks it sees (into a list shared by several)."""

    def __init__(self, name: str, seen: list[tuple[str, str, Any]]) -> None:
        self.name, self.seen = name, seen

    def request(self, flow: Any) -> None:
        self.seen.append((self.name, "request", flow))


class AsyncRecorder(Recorder):
    def request(self, flow: Any) -> Any:
        async def later() -> None:
            await asyncio.sleep(0)
            self.seen.append((self.name, "request", flow))

        return later()


class Halting(Recorder):
    def request(self, flow: Any) -> None:
        self.seen.append((self.name, "request", flow))
        raise exceptions.AddonHalt()


class Failing(Recorder):
    def request(self, flow: Any) -> None:
        raise ValueError("boom")


class Updating(Recorder):
    def update(self, flows: list[Any]) -> None:
        self.seen.append((self.name, "update", flows))


class Parent:
    """An addon with children, as mitmproxy's script loader has."""

    def __init__(self, children: list[Any]) -> None:
        self.addons = children


def dispatch(addons: list[Any], hook: hooks.Hook) -> fasthooks.HookTable:
    """Run ``hook`` through a master whose manager has a HookTable."""

    async def go() -> fasthooks.HookTable:
        m = master.Master(options.Options(), with_termlog=False)
        m.addons.add(*addons)
        table = fasthooks.install(m.addons)
        await m.addons.handle_lifecycle(hook)
        return table

    return asyncio.run(go())


def names(seen: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{who}.{what}" for who, what, _ in seen]


def test_handlers_run_in_chain_order_with_the_hook_argument_and_awaitables_awaited() -> None:
    seen: list[tuple[str, str, Any]] = []
    flow = tflow.tflow()
    dispatch([Recorder("a", seen), AsyncRecorder("b", seen), Recorder("c", seen)], hooks_for(flow))
    assert names(seen) == ["a.request", "b.request", "c.request"]
    assert all(arg is flow for _, _, arg in seen)


def hooks_for(flow: Any) -> hooks.Hook:
    return HttpRequestHook(flow)


def test_addon_halt_stops_the_chain() -> None:
    seen: list[tuple[str, str, Any]] = []
    dispatch(
        [Recorder("a", seen), Halting("b", seen), Recorder("c", seen)], hooks_for(tflow.tflow())
    )
    assert names(seen) == ["a.request", "b.request"]


def test_a_failing_addon_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str, Any]] = []
    with caplog.at_level(logging.ERROR):
        dispatch([Failing("a", seen), Recorder("b", seen)], hooks_for(tflow.tflow()))
    assert names(seen) == ["b.request"]
    assert any("Addon error: boom" in r.getMessage() for r in caplog.records)


def test_update_runs_after_a_flow_hook_only_when_an_addon_handles_it() -> None:
    seen: list[tuple[str, str, Any]] = []
    flow = tflow.tflow()
    dispatch([Recorder("a", seen), Updating("u", seen)], hooks_for(flow))
    assert names(seen) == ["a.request", "u.request", "u.update"]
    assert seen[2][2] == [flow]


def test_nested_addons_use_mitmproxys_own_dispatch() -> None:
    seen: list[tuple[str, str, Any]] = []
    dispatch([Parent([Recorder("child", seen)]), Recorder("b", seen)], hooks_for(tflow.tflow()))
    assert names(seen) == ["child.request", "b.request"]


def test_the_table_follows_addons_added_later() -> None:
    seen: list[tuple[str, str, Any]] = []

    async def go() -> None:
        m = master.Master(options.Options(), with_termlog=False)
        m.addons.add(Recorder("a", seen))
        fasthooks.install(m.addons)
        await m.addons.handle_lifecycle(hooks_for(tflow.tflow()))
        m.addons.add(Recorder("b", seen))
        await m.addons.handle_lifecycle(hooks_for(tflow.tflow()))

    asyncio.run(go())
    assert names(seen) == ["a.request", "a.request", "b.request"]


def test_run_now_finishes_synchronous_hooks_and_defers_the_rest_of_an_async_one() -> None:
    seen: list[tuple[str, str, Any]] = []

    async def go() -> None:
        m = master.Master(options.Options(), with_termlog=False)
        slow = AsyncRecorder("b", seen)
        m.addons.add(Recorder("a", seen), slow, Recorder("c", seen))
        table = fasthooks.install(m.addons)
        rest = table.run_now(hooks_for(tflow.tflow()))
        assert rest is not None
        assert names(seen) == ["a.request"]  # b's coroutine and c wait for the caller
        await rest
        assert names(seen) == ["a.request", "b.request", "c.request"]
        seen.clear()
        m.addons.remove(slow)
        assert table.run_now(hooks_for(tflow.tflow())) is None
        assert names(seen) == ["a.request", "c.request"]

    asyncio.run(go())
    assert names(seen) == ["a.request", "c.request"]


# --------------------------------------------------------------------------- on the wire


def add_addon(proxy: ChaosProxy, addon: Any) -> None:
    """Add ``addon`` to a running ChaosProxy's master, on its loop."""
    assert proxy._loop is not None
    done = threading.Event()

    def add() -> None:
        proxy._master.addons.add(addon)
        done.set()

    proxy._loop.call_soon_threadsafe(add)
    assert done.wait(5)


class Interceptor:
    """Intercepts every request; the test resumes them."""

    def __init__(self) -> None:
        self.flows: list[Any] = []

    def request(self, flow: Any) -> None:
        flow.intercept()
        self.flows.append(flow)


@pytest.mark.wire
def test_an_intercepted_flow_waits_until_resumed(upstream: UpstreamServer) -> None:
    with ChaosProxy(upstream=upstream.url) as proxy:
        interceptor = Interceptor()
        add_addon(proxy, interceptor)
        result: dict[str, int] = {}
        client = threading.Thread(
            target=lambda: result.setdefault("status", requests.get(f"{proxy.url}/x").status_code)
        )
        client.start()
        wait_until(lambda: interceptor.flows)
        client.join(0.3)
        assert client.is_alive() and "status" not in result  # held while intercepted
        assert proxy._loop is not None
        proxy._loop.call_soon_threadsafe(interceptor.flows[0].resume)
        client.join(10)
        assert result == {"status": 200}


class BrokenResponse:
    def response(self, flow: Any) -> None:
        raise RuntimeError("addon bug")


@pytest.mark.wire
def test_a_failing_addon_does_not_break_the_request_or_the_decision_log(
    upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = {"rules": [{"match": {"path": "/e"}, "fault": {"type": "error", "status": 503}}]}
    with caplog.at_level(logging.ERROR), ChaosProxy(upstream=upstream.url, scenario=scenario) as p:
        add_addon(p, BrokenResponse())
        assert requests.get(f"{p.url}/ok").status_code == 200
        assert requests.get(f"{p.url}/e").status_code == 503
        assert [(d.path, d.status) for d in p.decisions] == [("/ok", 200), ("/e", 503)]
    assert any("Addon error: addon bug" in r.getMessage() for r in caplog.records)


def test_requests_arriving_before_the_proxy_is_open_wait_for_it() -> None:
    """serve() opens the addon after its banner; a request decided before that would count
    against an engine whose phase clock has not started."""

    async def go() -> list[str]:
        addon = ChaosAddon()
        addon.hold()
        flow = tflow.tflow()
        flow.request.path = "/x"
        pending = addon.request(flow)
        assert pending is not None and addon.engine.requests == 0
        task = asyncio.ensure_future(pending)
        await asyncio.sleep(0)
        order = ["waiting" if not task.done() else "done early"]
        addon.open()
        await task
        order.append(f"decided {addon.engine.requests}")
        return order

    assert asyncio.run(go()) == ["waiting", "decided 1"]


def test_a_standalone_addon_is_never_held() -> None:
    """``mitmdump -s`` (and its script reloads, which never call ``running`` again) serve
    requests without waiting for an announcement only ``serve()`` makes."""
    addon = ChaosAddon()
    flow = tflow.tflow()
    assert addon.request(flow) is None and addon.engine.requests == 1


def test_when_mitmproxy_crashes_on_an_event_its_hooks_and_queued_completions_go_on() -> None:
    """The hooks raised before the crash still run, and every completion still queued is
    delivered in a server_event of its own, as mitmproxy's per-hook tasks would."""
    seen: list[tuple[str, str, Any]] = []
    first, second = tflow.tflow(), tflow.tflow()

    async def go() -> list[Any]:
        m = master.Master(options.Options(), with_termlog=False)
        m.addons.add(Recorder("a", seen))
        fasthooks.install(m.addons)
        delivered: list[Any] = []

        def layer_events(event: Any) -> Any:
            if event == "start":
                yield HttpRequestHook(first)
                yield HttpRequestHook(second)
                raise RuntimeError("mitmproxy crashed")

        class Handler:
            layer = SimpleNamespace(handle_event=layer_events)

            async def server_event(self, event: Any) -> None:
                delivered.append(event)

        handler = Handler()
        client = SimpleNamespace(id="c1")
        proxyserver = SimpleNamespace(connections={"c1": handler})
        m.addons.get = lambda name: proxyserver if name == "proxyserver" else None  # type: ignore[method-assign]
        inline = fasthooks.InlineHooks()
        inline.master = m
        inline.client_connected(client)
        with pytest.raises(RuntimeError, match="crashed"):
            list(handler.layer.handle_event("start"))
        await asyncio.sleep(0.01)
        return delivered

    delivered = asyncio.run(go())
    assert [arg for _, _, arg in seen] == [first, second]  # both hooks ran
    assert [type(e).__name__ for e in delivered] == ["HookCompleted", "HookCompleted"]
    assert [e.command.flow for e in delivered] == [first, second]


def _pipelined(url_port: int, paths: list[str]) -> list[bytes]:
    """Send GETs for ``paths`` in one write on one connection; the answers' statuses."""
    with socket.create_connection(("127.0.0.1", url_port), timeout=10) as sock:
        sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        data = b""
        while data.count(b"HTTP/1.1 ") < len(paths) or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    return re.findall(rb"HTTP/1\.1 \d{3}", data)


@pytest.mark.wire
def test_pipelined_requests_are_each_answered(upstream: UpstreamServer) -> None:
    """The second request is parsed while the first one's answer goes out; its hooks run
    only once the upstream connection's layer has finished with the first answer."""
    before = len(upstream.received)  # the upstream is shared by the module's tests
    with ChaosProxy(upstream=upstream.url) as proxy:
        assert _pipelined(proxy.port, ["/json", "/json", "/json"]) == [b"HTTP/1.1 200"] * 3
        assert [d.path for d in proxy.decisions] == ["/json"] * 3
    assert [path for _, path, *_ in upstream.received[before:]] == ["/json"] * 3


@pytest.mark.wire
def test_a_delayed_request_and_the_one_pipelined_behind_it(upstream: UpstreamServer) -> None:
    scenario = {
        "rules": [{"match": {"path": "/slow"}, "fault": {"type": "latency", "delay": "200ms"}}]
    }
    with ChaosProxy(upstream=upstream.url, scenario=scenario) as proxy:
        started = time.monotonic()
        assert _pipelined(proxy.port, ["/slow?x=1", "/json"]) == [b"HTTP/1.1 200"] * 2
        assert time.monotonic() - started >= 0.2
        assert [d.path for d in proxy.decisions] == ["/slow", "/json"]
