"""The cheaper hook dispatch (proxy_addons/fasthooks.py) keeps mitmproxy's hook semantics:
order, arguments, AddonHalt, logged addon errors, awaited handlers, update hooks, nested
addons; and, through a real proxy, intercepted flows and failing addons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from mitmproxy import exceptions, hooks, master, options
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layer import Layer
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from proxy_addons import fasthooks
from proxy_addons.api import ChaosProxy
from proxy_addons.chaos import ChaosAddon
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


class Steps(Layer):
    """A real mitmproxy layer: on ``start`` it raises the request hook for two flows, logs,
    and then crashes (as a mitmproxy bug would)."""

    def __init__(self, context: Context, flows: list[Any]) -> None:
        super().__init__(context)
        self.flows = flows

    def _handle_event(self, event: Any) -> Any:
        if isinstance(event, events.Start):
            for f in self.flows:
                yield HttpRequestHook(f)
            yield commands.Log("both hooks are done")
            raise RuntimeError("mitmproxy crashed")


def on_connection(
    addons: list[Any], flows: list[Any], *, inline: bool = True
) -> tuple[Steps, list[Any], Any]:
    """A master with ``addons`` and a connection whose top layer is :class:`Steps`; the
    HookCompleted events that reach the connection handler are collected."""
    m = master.Master(options.Options(), with_termlog=False)
    m.addons.add(*addons)
    fasthooks.install(m.addons)
    client = tflow.tclient_conn()
    layer = Steps(Context(client, m.options), flows)
    delivered: list[Any] = []

    class Handler:
        timeout_watchdog = SimpleNamespace(disarm=contextlib.nullcontext)

        async def server_event(self, event: Any) -> None:
            delivered.append(event)

    handler = Handler()
    handler.layer = layer  # type: ignore[attr-defined]
    proxyserver = SimpleNamespace(connections={client.id: handler})
    m.addons.get = lambda name: proxyserver if name == "proxyserver" else None  # type: ignore[method-assign]
    hooks_inline = fasthooks.InlineHooks()
    hooks_inline.master = m
    fasthooks.complete_hooks_in_layers()
    if inline:
        hooks_inline.client_connected(client)
    return layer, delivered, handler


def test_a_layer_runs_its_hooks_on_the_spot_and_goes_on() -> None:
    """The layer that raises a hook runs its handlers and goes on: nothing climbs out but
    the log line, and the crash after it still propagates (nothing left pending)."""
    seen: list[tuple[str, str, Any]] = []
    first, second = tflow.tflow(), tflow.tflow()

    async def go() -> None:
        layer, delivered, handler = on_connection([Recorder("a", seen)], [first, second])
        out: list[Any] = []
        with pytest.raises(RuntimeError, match="crashed"):
            for command in handler.layer.handle_event(events.Start()):
                out.append(command)
        assert [arg for _, _, arg in seen] == [first, second]
        assert [type(c).__name__ for c in out] == ["Log"]
        await asyncio.sleep(0.01)
        assert layer._paused is None and delivered == []

    asyncio.run(go())


def test_a_hook_not_done_at_once_pauses_its_layer_until_its_completion_arrives() -> None:
    seen: list[tuple[str, str, Any]] = []
    first, second = tflow.tflow(), tflow.tflow()

    async def go() -> None:
        layer, delivered, handler = on_connection([AsyncRecorder("a", seen)], [first, second])
        out = list(handler.layer.handle_event(events.Start()))
        assert out == []  # the started hook is not handed to mitmproxy to start again
        assert layer._paused is not None and layer._paused.command.flow is first
        await wait_for(lambda: delivered)
        assert [arg for _, _, arg in seen] == [first]
        (completed,) = delivered
        assert isinstance(completed, events.HookCompleted) and completed.command.flow is first
        delivered.clear()
        assert list(handler.layer.handle_event(completed)) == []  # on to the second hook
        assert layer._paused.command.flow is second
        await wait_for(lambda: delivered)
        with pytest.raises(RuntimeError, match="crashed"):
            list(handler.layer.handle_event(delivered[0]))
        assert [arg for _, _, arg in seen] == [first, second]

    asyncio.run(go())


def test_a_layer_of_a_connection_without_inline_hooks_waits_as_in_mitmproxy() -> None:
    seen: list[tuple[str, str, Any]] = []
    first = tflow.tflow()

    async def go() -> None:
        layer, _, handler = on_connection([Recorder("a", seen)], [first], inline=False)
        (command,) = handler.layer.handle_event(events.Start())
        assert isinstance(command, HttpRequestHook) and command.blocking is layer
        assert seen == [] and layer._paused is not None

    asyncio.run(go())


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)
