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
function that returns at once, and the layer waits a loop iteration for that task; the
hook's command then climbs out through every layer above it, and its completion comes back
down through all of them. For the connections of a master with a :class:`HookTable`, the
layer that raises a hook runs its handlers on the spot (:func:`complete_hooks_in_layers`)
and, when they are all done, goes on as if the completion had arrived. Hooks run in the
order their layers raise them, as mitmproxy's tasks start them. A handler that returns an
awaitable (a fault that delays the request) and an intercepted flow continue in a task as
before, and the layer waits for them as it would for mitmproxy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks
from mitmproxy.proxy import commands, events

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
    """Addon: completes a connection's hooks where its layers raise them (see the module
    docstring)."""

    def __init__(self) -> None:
        self.master: Any = None
        self._tasks: set[asyncio.Future[None]] = set()

    def load(self, loader: Any) -> None:
        self.master = loader.master
        complete_hooks_in_layers()

    def client_connected(self, client: Any) -> None:
        if self.master is None:
            return
        table = table_of(self.master.addons)
        proxyserver = self.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(client.id) if proxyserver is not None else None
        layer = getattr(handler, "layer", None)
        if table is None or layer is None or not hasattr(handler, "server_event"):
            return

        def run(hook: commands.StartHook) -> bool:
            if not table.is_flat():
                return False  # mitmproxy's own dispatch, in its own task
            if self._complete(handler, table, hook):
                return True
            hook._chaosproxy_started = True  # type: ignore[attr-defined]
            return False

        _runners[client.id] = run
        original = layer.handle_event

        def handle_event(event: events.Event) -> Iterator[commands.Command]:
            for command in original(event):
                if not getattr(command, "_chaosproxy_started", False):
                    yield command  # a hook started at its layer is not mitmproxy's to start

        layer.handle_event = handle_event

    def client_disconnected(self, client: Any) -> None:
        _runners.pop(client.id, None)

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


#: client id -> that connection's runner: given a blocking hook its layer raised, True when
#: the hook is complete (the layer goes on at once), False when the layer must wait for it
_runners: dict[str, Callable[[commands.StartHook], bool]] = {}


def complete_hooks_in_layers() -> bool:
    """Replace ``Layer.handle_event`` and its ``__process`` with copies that, before a layer
    pauses on a blocking hook, offer the hook to its connection's runner (InlineHooks). A
    layer of a connection without one, and a hook the runner cannot finish at once, behave
    exactly as in mitmproxy. False when already done, or when mitmproxy's layer changed."""
    from mitmproxy.proxy import layer as layers

    base = layers.Layer
    if getattr(base.handle_event, "_chaosproxy", False):
        return False
    paused = getattr(layers, "Paused", None)
    needed = ("_Layer__continue", "_Layer__debug", "_Layer__process", "_handle_event")
    if paused is None or not all(hasattr(base, name) for name in needed):
        return False

    def handle_event(self: Any, event: events.Event) -> Iterator[commands.Command]:
        if self._paused:
            finished = (
                isinstance(event, events.CommandCompleted)
                and event.command is self._paused.command
            )
            if self.debug is not None:
                yield self._Layer__debug(f"{'>>' if finished else '>!'} {event}")
            if finished:
                yield from self._Layer__continue(event)
            else:
                self._paused_event_queue.append(event)
        else:
            if self.debug is not None:
                yield self._Layer__debug(f">> {event}")
            yield from process(self, self._handle_event(event))

    def process(self: Any, generator: Any, send: Any = None) -> Iterator[commands.Command]:
        try:
            command = generator.send(send)
        except StopIteration:
            return
        while True:
            if self.debug is not None and not isinstance(command, commands.Log):
                yield self._Layer__debug(f"<< {command}")
            if command.blocking is True:
                run = (
                    _runners.get(self.context.client.id)
                    if isinstance(command, commands.StartHook)
                    else None
                )
                if run is not None and run(command):
                    try:
                        command = generator.send(None)  # a hook's reply is None
                    except StopIteration:
                        return
                    continue
                # only this layer waits: outer layers check for ``blocking is True``
                command.blocking = self
                self._paused = paused(command, generator)
                yield command
                return
            yield command
            try:
                command = next(generator)
            except StopIteration:
                return

    handle_event._chaosproxy = True  # type: ignore[attr-defined]
    base.handle_event = handle_event  # type: ignore[method-assign,assignment]
    base._Layer__process = process  # type: ignore[attr-defined]
    return True
