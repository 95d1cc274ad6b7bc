"""Scenario loading off the event loop: the proxy keeps serving while a large one parses.

Parsing YAML and validating a scenario is pure Python and holds the GIL: a 1 MB scenario
takes 5 to 15 s of CPU. In a thread, requests through the proxy still wait for the GIL
(measured on 2 busy cores during a 1 MB parse: p50 26 ms, p99 193 ms per request); in a
second process they do not (p50 5.5 ms, p99 51 ms). So a document of
:data:`THREAD_LIMIT` bytes or more is loaded in a worker process (started on first use
with ``spawn``, one for the whole process, kept for the next), and a smaller one, which
loads in milliseconds, in a thread (no process start-up for the usual small PUT).

Several proxies may run in one process (the Python API, tests): each control server and
watcher holds the worker process while it runs (:func:`acquire` when it starts, :func:`release`
when it stops); the process ends (even in the middle of a load) when the last user releases it,
so stopping one proxy never breaks another's load.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

logger = logging.getLogger("chaosproxy")

T = TypeVar("T")

#: Documents this large (bytes) or larger are loaded in the worker process.
THREAD_LIMIT = 64_000

_pool: concurrent.futures.ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_users = 0  # control servers and watchers running (acquired, not yet released)


def _process_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            context = multiprocessing.get_context("spawn")  # never fork a threaded proxy
            _pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context)
        return _pool


def _drop_pool(broken: concurrent.futures.ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


async def run(fn: Callable[..., T], *args: Any, size: int) -> T:
    """``fn(*args)`` off the loop: in the worker process when ``size`` (bytes of the
    document) is at least :data:`THREAD_LIMIT`, else in a thread. ``fn`` and its arguments
    and result must pickle (module-level functions, plain data, scenarios)."""
    if size < THREAD_LIMIT:
        return await asyncio.to_thread(fn, *args)
    pool = _process_pool()
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
    except BrokenProcessPool:  # the worker died (killed, out of memory): start afresh
        logger.warning("the scenario loading process ended; loading in a thread instead")
        _drop_pool(pool)
        return await asyncio.to_thread(fn, *args)


def acquire() -> None:
    """A user (a control server, a watcher) starts: the worker process is kept for it."""
    global _users
    with _pool_lock:
        _users += 1


def release() -> None:
    """A user stops (once per :func:`acquire`): when it was the last, the worker process
    ends now (:func:`shutdown`); while others remain, their loads go on undisturbed."""
    global _users
    with _pool_lock:
        if _users <= 0:
            raise RuntimeError("offload.release() without a matching acquire()")
        _users -= 1
        last = _users == 0
    if last:
        shutdown()


def shutdown() -> None:
    """Stop the worker process now, if one was started, even in the middle of a load: the
    last proxy is stopping, and interpreter exit would otherwise wait for the load to end
    (up to 15 s). A load still awaited elsewhere in this process falls back to a thread.
    Proxies call :func:`release` instead, which ends it only after the last one."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    # the executor has no public way to end a busy worker: reach its processes
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
