"""Cheaper hook dispatch for the masters chaosproxy builds (``CHAOSPROXY_NO_LEAN=1``: off).

mitmproxy runs every hook (``requestheaders``, ``request``, ``response``...) through its
``AddonManager``: for each addon in the chain it walks the addon's children, looks the
handler up by name, rebuilds the hook's argument list from its dataclass fields and enters
a ``safecall`` context manager, and then does it all again for an ``update`` hook. With a
handful of addons that walk costs more than the handlers themselves: about a third of a
passthrough request's CPU.

:func:`install` gives one master's ``AddonManager`` a table from hook name to the handlers
that exist, built once per chain, and skips ``update`` when nothing handles it. Handlers run
in the same order with the same semantics: an ``AddonHalt`` stops the chain, an
``OptionsError`` propagates, any other exception is logged as mitmproxy logs it and the next
addon runs; a handler that returns an awaitable is awaited. A chain with nested addons
(``addons`` attributes, as script loaders have) uses mitmproxy's own dispatch. Handlers
are looked up once per chain: an addon that swaps its hook methods while running must be
added again for the change to be seen (mitmproxy looks them up on every hook).

:class:`InlineHooks` (an addon) removes the other half of the cost: mitmproxy starts an
asyncio task for every hook a connection's layers raise, even when every handler is a plain
function that returns at once, and the layer waits a loop iteration for that task. For the
connections of a master with a :class:`HookTable`, a hook's handlers run as soon as the event
that raised it has been handled, and the layer hears right away that the hook is complete,
in the order mitmproxy would have delivered it. A handler that returns an awaitable (a fault
that delays the request) and an intercepted flow continue in a task as before.

``PATCH`` (``fast_hooks``) applies both to a master; this module imports mitmproxy, so
the seam imports it only when a master is built.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks
from mitmproxy.proxy import commands, events

from chaosproxy.proxy_addons._internals import (
    Patch,
    missing_attributes,
    missing_instance_attributes,
)

#: mitmproxy's own logger for addon errors, so they read as before
_addon_logger = logging.getLogger(addonmanager.__name__)

Handlers = tuple[Callable[..., Any], ...]


class HookTable:
    """hook name -> handlers, for one ``AddonManager`` chain."""

    def __init__(self, manager: addonmanager.AddonManager) -> None:
        self.manager = manager
        self._chain: tuple[Any, ...] | None = None
        self._flat = False
        self._handlers: dict[str, Handlers] = {}
        self._fields: dict[type, tuple[str, ...]] = {}

    def is_flat(self) -> bool:
        """Rebuild the table when the chain changed; False when it is not flat."""
        chain = tuple(self.manager.chain)  # holds the addons: their ids cannot be reused
        if chain != self._chain:
            self._chain = chain
            self._handlers = {}
            self._flat = not any(hasattr(a, "addons") for a in chain)
        return self._flat

    def handlers(self, name: str) -> Handlers:
        found = self._handlers.get(name)
        if found is None:
            funcs = []
            for addon in self.manager.chain:
                func = getattr(addon, name, None)
                if func is not None and callable(func):
                    funcs.append(func)
            found = self._handlers[name] = tuple(funcs)
        return found

    def args(self, event: hooks.Hook) -> list[Any]:
        names = self._fields.get(type(event))
        if names is None:
            names = self._fields[type(event)] = tuple(
                f.name
                for f in dataclasses.fields(event)  # type: ignore[arg-type]
            )
        return [getattr(event, n) for n in names]

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        """``AddonManager.handle_lifecycle``, with the table."""
        if not self.is_flat():
            await type(self.manager).handle_lifecycle(self.manager, event)
            return
        args = self.args(event)
        await self._trigger(self.handlers(event.name), args)
        update = self._update(args)
        if update is not None:
            await update

    @staticmethod
    async def _trigger(handlers: Handlers, args: list[Any]) -> None:
        for func in handlers:
            try:
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception:
                _log_addon_error()

    def run_now(self, hook: hooks.Hook) -> Awaitable[None] | None:
        """Run ``hook``'s handlers; None when all of them are done, else an awaitable that
        runs the rest (from the first handler that returned an awaitable). The chain must be
        flat (see :meth:`is_flat`)."""
        self.is_flat()
        args = self.args(hook)
        handlers = self.handlers(hook.name)
        for i, func in enumerate(handlers):
            try:
                result = func(*args)
            except exceptions.AddonHalt:
                break
            except Exception:  # OptionsError too: nothing above would catch it here
                _log_addon_error()
                continue
            if result is not None and inspect.isawaitable(result):
                return self._rest(result, handlers[i + 1 :], args)
        return self._update(args)

    def _update(self, args: list[Any]) -> Awaitable[None] | None:
        """mitmproxy's ``update`` hook after a flow's hook, when an addon handles it."""
        updates = self.handlers(hooks.UpdateHook.name)
        if updates and isinstance(args[0], flow.Flow):
            return self._trigger(updates, [[args[0]]])
        return None

    async def _rest(self, pending: Awaitable[Any], handlers: Handlers, args: list[Any]) -> None:
        try:
            await pending
        except exceptions.AddonHalt:
            handlers = ()
        except Exception:
            _log_addon_error()
        await self._trigger(handlers, args)
        update = self._update(args)
        if update is not None:
            await update


def _log_addon_error() -> None:
    value = sys.exc_info()[1]
    _addon_logger.error(f"Addon error: {value}", exc_info=True)


def install(manager: addonmanager.AddonManager) -> HookTable:
    """Dispatch ``manager``'s lifecycle hooks through a :class:`HookTable`."""
    table = HookTable(manager)
    manager.handle_lifecycle = table.handle_lifecycle  # type: ignore[method-assign]
    return table


def table_of(manager: addonmanager.AddonManager) -> HookTable | None:
    """The HookTable :func:`install` gave ``manager``, if any."""
    table = getattr(manager.handle_lifecycle, "__self__", None)
    return table if isinstance(table, HookTable) else None


class InlineHooks:
    """Addon: completes a connection's hooks without a task each (see the module docstring)."""

    def __init__(self) -> None:
        self.master: Any = None
        self._tasks: set[asyncio.Future[None]] = set()

    def load(self, loader: Any) -> None:
        self.master = loader.master

    def client_connected(self, client: Any) -> None:
        if self.master is None:
            return
        table = table_of(self.master.addons)
        proxyserver = self.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(client.id) if proxyserver is not None else None
        layer = getattr(handler, "layer", None)
        if table is None or layer is None or not hasattr(handler, "server_event"):
            return
        original = layer.handle_event

        def handle_event(event: events.Event) -> Iterator[commands.Command]:
            queue = collections.deque((event,))
            while queue:
                raised: list[commands.StartHook] = []
                try:
                    for command in original(queue.popleft()):
                        if isinstance(command, commands.StartHook) and table.is_flat():
                            raised.append(command)  # run once the event is handled
                        else:
                            yield command
                except Exception:
                    # mitmproxy crashed on this event (server_event logs it): the hooks it
                    # raised and the completions still queued each go on separately, as
                    # mitmproxy's tasks would, so other flows are not stranded
                    self._complete_apart(handler, table, raised, queue)
                    raise
                for hook in raised:
                    if self._complete(handler, table, hook) and hook.blocking:
                        queue.append(events.HookCompleted(hook))

        layer.handle_event = handle_event

    def _complete_apart(
        self,
        handler: Any,
        table: HookTable,
        raised: list[commands.StartHook],
        queue: collections.deque[events.Event],
    ) -> None:
        for hook in raised:
            if self._complete(handler, table, hook) and hook.blocking:
                queue.append(events.HookCompleted(hook))
        for event in queue:
            self._keep(asyncio.ensure_future(handler.server_event(event)))
        queue.clear()

    def _keep(self, task: asyncio.Future[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _complete(self, handler: Any, table: HookTable, hook: commands.StartHook) -> bool:
        """Run ``hook``; True when it is complete, False when a task completes it later."""
        rest = table.run_now(hook)
        data = table.args(hook)[0]
        if rest is None and not (isinstance(data, flow.Flow) and data.intercepted):
            return True
        self._keep(asyncio.ensure_future(self._later(handler, hook, rest, data)))
        return False

    @staticmethod
    async def _later(
        handler: Any, hook: commands.StartHook, rest: Awaitable[None] | None, data: Any
    ) -> None:
        with handler.timeout_watchdog.disarm():
            if rest is not None:
                await rest
            if isinstance(data, flow.Flow):
                await data.wait_for_resume()
        if hook.blocking:
            await handler.server_event(events.HookCompleted(hook))


def check() -> str | None:
    """The shape both halves rely on: the manager's dispatch, hooks and their completion,
    and a connection handler's layer, event entry point and idle watchdog."""
    from mitmproxy.addons import proxyserver
    from mitmproxy.proxy import server

    manager = addonmanager.AddonManager
    lifecycle = getattr(manager, "handle_lifecycle", None)
    if lifecycle is None or not inspect.iscoroutinefunction(lifecycle):
        return "AddonManager.handle_lifecycle is not a coroutine function"
    if list(inspect.signature(lifecycle).parameters) != ["self", "event"]:
        return "AddonManager.handle_lifecycle(self, event) changed its signature"
    return (
        missing_instance_attributes(manager, "chain")
        or missing_attributes(hooks, "UpdateHook")
        or missing_attributes(commands.StartHook, "blocking", "name")
        or missing_attributes(events, "HookCompleted")
        or missing_attributes(exceptions, "AddonHalt", "OptionsError")
        or missing_attributes(flow.Flow, "wait_for_resume")
        or missing_instance_attributes(flow.Flow, "intercepted")
        or missing_attributes(server.ConnectionHandler, "server_event")
        or missing_instance_attributes(
            server.ConnectionHandler, "layer", "timeout_watchdog", "client"
        )
        or missing_attributes(server.TimeoutWatchdog, "disarm")
        or missing_instance_attributes(proxyserver.Proxyserver, "connections")
    )


def apply(master: Any) -> None:
    if master is None:
        raise ValueError("fast_hooks applies to a master")
    install(master.addons)
    master.addons.add(InlineHooks())


PATCH = Patch(
    name="fast_hooks",
    target="mitmproxy.addonmanager.AddonManager.handle_lifecycle (per master), and each "
    "connection's layer.handle_event",
    check=check,
    apply=apply,
    fallback="hooks go through mitmproxy's own dispatch, a task each (slower)",
    per_master=True,
)
