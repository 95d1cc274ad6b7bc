"""Shared state in Redis: N replicas decide as one process would (``--state redis://...``).

What lives in Redis (keys under ``chaosproxy:`` in the URL's database):

- ``chaosproxy:control``: the cluster's scenario (its document, seed, source), paused,
  the phase timeline (active phase, its start on the shared clock, the ttl's end), and
  four numbers: ``epoch`` (every change), ``version`` (every scenario applied), ``gen``
  (the counters' generation: apply, reset, jump) and ``since`` (apply, reset: what
  replica counts are added up from). Every change is published on
  ``chaosproxy:changes``; a replica applies a change only when its epoch is newer than
  the last one it applied, so a late message never takes a replica back.
- ``chaosproxy:c:GEN:PHASE:START``: the phase's rule counters and rate windows, and
  ``...:RULE`` the per_request attempts: one Lua script per decision reads and updates
  them atomically (:mod:`chaosproxy.state.selection`). Only requests a rule matches go
  there: passthrough never touches Redis.
- ``chaosproxy:replica:ID``: each replica's counts, refreshed every
  :data:`HEARTBEAT` s (gone :data:`MEMBER_TTL` s after it stops), for
  ``/stats?scope=cluster``.

The clock is shared too: each replica reads Redis's ``TIME`` when it connects and counts
phases from that, so a phase starts and ends at the same moment everywhere.

When Redis does not answer a decision within :data:`DECISION_TIMEOUT` (50 ms; the URL's
``?timeout=`` to change it), that
request is decided with the replica's own copy of the state (the counts Redis last
returned) and counted in ``chaosproxy_state_fallbacks_total``. A connection that fails,
or a ping that gets no answer within :data:`CONTROL_TIMEOUT` after such a timeout (a
busy process can miss 50 ms; a hung Redis misses both), makes the replica decide alone
until Redis answers again: it says so once (a warning), checks every
:data:`RECONNECT_INTERVAL` s and rejoins; changes made meanwhile are shared then (or, if
Redis came back empty, the scenario is shared afresh).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.engine import Decision, Engine, RequestView
from chaosproxy.core.units import counted
from chaosproxy.state.base import DEFAULT_TIMEOUT, RedisURL, StateUnavailable
from chaosproxy.state.selection import (
    SELECT_SCRIPT,
    Candidate,
    NeedDraws,
    arguments,
    candidates,
    decision_of,
    read_reply,
)

logger = logging.getLogger("chaosproxy")


def made_alone(decisions: int) -> str:
    """What a replica that rejoins says of its time alone: ``1 decision was made ...``."""
    verb = "was" if decisions == 1 else "were"
    return f"{counted(decisions, 'decision')} {verb} made with this replica's own state"


#: The longest a request waits on Redis for its decision (then: this replica's own
#: state), unless the URL says ``?timeout=``.
DECISION_TIMEOUT = DEFAULT_TIMEOUT
#: The longest a change (apply, pause, jump...) or a heartbeat waits on Redis.
CONTROL_TIMEOUT = 0.5
#: How long the first connection may take at start-up before the proxy serves without it.
CONNECT_TIMEOUT = 2.0
#: How often an unreachable Redis is tried again.
RECONNECT_INTERVAL = 0.25
#: How often a replica writes its counts for ``/stats?scope=cluster``.
HEARTBEAT = 0.5
#: A replica whose counts were not refreshed for this long is no longer counted.
MEMBER_TTL = 5.0
#: Counters of a phase, and per_request attempts, are dropped a day after their last use.
PREFIX = "chaosproxy:"
CHANNEL = PREFIX + "changes"
CONTROL = PREFIX + "control"
MEMBERS = PREFIX + "replicas"

CHANGE_SCRIPT = """
-- KEYS[1]: the control hash. ARGV: mode (init|change), kind, body, channel,
-- the sender's epoch and version (a store that came back empty continues after them)
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'version', 'gen', 'since', 'body')
if ARGV[1] == 'init' and cur[1] then
  return {'exists', cur[1], cur[2], cur[3], cur[4], cur[5]}
end
local kind = ARGV[2]
local epoch = math.max(tonumber(cur[1] or '0'), tonumber(ARGV[5])) + 1
local version = math.max(tonumber(cur[2] or '0'), tonumber(ARGV[6]))
local gen, since = tonumber(cur[3] or '0'), tonumber(cur[4] or '0')
if kind == 'apply' then version = version + 1 end
if kind == 'apply' or kind == 'reset' or kind == 'jump' then gen = epoch end
if kind == 'apply' or kind == 'reset' then since = epoch end
redis.call('HSET', KEYS[1], 'epoch', epoch, 'version', version, 'gen', gen,
           'since', since, 'body', ARGV[3])
redis.call('PUBLISH', ARGV[4], epoch .. ' ' .. version .. ' ' .. gen .. ' ' .. since
           .. ' ' .. ARGV[3])
return {'ok', epoch, version, gen, since}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisState:
    """The :class:`~chaosproxy.state.base.ScenarioState` of a replica sharing Redis."""

    def __init__(
        self,
        url: RedisURL,
        engine: Engine,
        *,
        on_reset: Callable[[], object] | None = None,
        reschedule: Callable[[], object] | None = None,
        on_apply: Callable[[], object] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.url = url
        self.engine = engine
        self.on_reset = on_reset
        self.reschedule = reschedule
        self.on_apply = on_apply
        #: the longest a request waits for Redis's decision (the URL's ?timeout=, 50 ms)
        self.timeout = timeout if timeout is not None else url.timeout
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        #: True while Redis does not answer: decisions use this replica's own state
        self.degraded = True
        #: decisions made with this replica's own state because Redis did not answer
        self.fallbacks = 0
        self.epoch = self.version = self.gen = self.since = 0
        self._offset = time.time() - time.monotonic()
        engine.use_clock(self._clock_with(self._offset))
        engine.on_change = self._local_change
        self._adopting = threading.local()
        self._mine: set[str] = set()  # tokens of our changes not yet confirmed
        self._dirty = False  # changes made while Redis was away, not shared yet
        self._redis: Any = None
        self._select: Any = None
        self._change: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned = False  # the warning for this outage was given
        #: True once this replica took the cluster's scenario instead of sharing its own
        self.adopted = False

    @property
    def describe(self) -> str:
        return self.url.safe

    @staticmethod
    def _clock_with(offset: float) -> Callable[[], float]:
        return lambda: time.monotonic() + offset

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._loop = asyncio.get_running_loop()
        self._redis = aioredis.Redis(
            host=self.url.host,
            port=self.url.port,
            db=self.url.db,
            password=_password(self.url.url),
            socket_connect_timeout=CONTROL_TIMEOUT,
            socket_timeout=CONTROL_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._select = self._redis.register_script(SELECT_SCRIPT)
        self._change = self._redis.register_script(CHANGE_SCRIPT)
        try:
            await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure: serve without it, say why
            self._lost(exc)
        self._spawn(self._heartbeats())

    async def _connect(self) -> None:
        """Ping, read the shared clock, listen for changes."""
        before = time.monotonic()
        sec, usec = await self._redis.time()
        after = time.monotonic()
        offset = sec + usec / 1e6 - (before + after) / 2
        if abs(offset - self._offset) > 0.001:
            self._offset = offset
            self.engine.use_clock(self._clock_with(offset))
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        if self._listener is not None:
            self._listener.cancel()
        self._listener = self._spawn(self._listen(pubsub))
        self.degraded = False

    async def join(self) -> None:
        """The engine's clock started: adopt the cluster's scenario, or share ours if the
        store has none (the first replica)."""
        if self.degraded:
            return  # the reconnection shares or adopts
        try:
            await self._sync()
        except Exception as exc:  # noqa: BLE001
            self._lost(exc)

    async def _sync(self) -> None:
        """Share this replica's state if the store has none (or ours changed while it was
        away); else adopt the store's when it is newer."""
        kind, mode = ("apply", "change") if self._dirty else ("init", "init")
        body = self._body(kind)
        self._mine.add(body["token"])
        await self._publish(kind, body, mode)
        self._dirty = False

    def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self._redis is not None and self._loop is not None and not self._loop.is_closed():
            redis = self._redis
            self._redis = None

            async def leave() -> None:
                try:
                    await asyncio.wait_for(redis.delete(f"{PREFIX}replica:{self.id}"), 0.2)
                except Exception:  # noqa: BLE001 - the key expires anyway
                    pass
                await redis.aclose()

            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                self._loop.create_task(leave())
            else:
                self._loop.call_soon_threadsafe(lambda: self._loop.create_task(leave()))  # type: ignore[union-attr]

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ deciding

    def decide_early(self, req: RequestView) -> tuple[bool, Decision | None]:
        if self.engine.body_could_decide(req):
            return False, None
        if not self.engine.matching(req):
            self.engine.count_unmatched(1)
            return True, None
        return False, None  # read whole, then decided against the store

    def decide(self, req: RequestView) -> Decision | None | Coroutine[Any, Any, Decision | None]:
        matched = self.engine.matching(req)
        if not matched:
            self.engine.count_unmatched(1)
            return None
        if self.degraded or self._redis is None:
            return self._local(req)
        return self._remote(req, candidates(matched, req))

    def _local(self, req: RequestView) -> Decision | None:
        self.fallbacks += 1
        return self.engine.decide(req)

    def _keys(self, cands: Sequence[Candidate]) -> list[str]:
        index, started, _ = self.engine.timeline_state()
        counters = f"{PREFIX}c:{self.gen}:{index}:{started!r}"
        return [counters, *(f"{counters}:{c.index}" for c in cands)]

    async def _remote(self, req: RequestView, cands: list[Candidate]) -> Decision | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        seed = self.engine.seed
        keys = self._keys(cands)
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"no answer within {self.timeout * 1000:g} ms")
                async with asyncio.timeout(remaining):  # no task of its own, unlike wait_for
                    reply = await self._select(keys=keys, args=arguments(cands, seed, req))
                result = read_reply(cands, reply)
                if isinstance(result, NeedDraws):  # other replicas matched that rule meanwhile
                    cands[result.position].draw_base = result.seen
                    continue
                tried = [(c.state, seen, injected) for c, seen, injected in result.tried]
                self.engine.count_shared(tried, result.fired)
                return decision_of(result, seed)
        except TimeoutError:  # Redis hangs, or this process is too busy to hear it in time
            if self._stopping:
                raise
            self._suspect()
            return self._local(req)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the request goes on
            if self._stopping:
                raise
            self._lost(exc)
            return self._local(req)

    # ------------------------------------------------------------------ losing and rejoining

    def _suspect(self) -> None:
        """A decision timed out: that request was decided here; a ping tells whether Redis
        is away (then all decide here until it answers) or this process was only busy."""
        if not self.degraded and (self._probe is None or self._probe.done()):
            self._probe = self._spawn(self._ping())

    async def _ping(self) -> None:
        try:
            await asyncio.wait_for(self._redis.ping(), CONTROL_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            if not str(exc):
                exc = TimeoutError(
                    f"no decision within {self.timeout * 1000:g} ms, "
                    f"nor an answer to a ping within {CONTROL_TIMEOUT:g} s"
                )
            self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        """Redis did not answer: decide locally (one warning), try again in the background."""
        self.degraded = True
        if not self._warned:
            self._warned = True
            text = str(exc).rstrip(".")
            why = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            logger.warning(
                "shared state %s unreachable (%s): deciding with this replica's own state "
                "until it answers again (checked every %g s)",
                self.url.safe,
                why,
                RECONNECT_INTERVAL,
            )
        if (self._reconnecting is None or self._reconnecting.done()) and not self._stopping:
            self._reconnecting = self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RECONNECT_INTERVAL)
            try:
                await asyncio.wait_for(self._redis.ping(), CONTROL_TIMEOUT)
                await asyncio.wait_for(self._connect(), CONTROL_TIMEOUT)
                await asyncio.wait_for(self._sync(), CONTROL_TIMEOUT)
            except Exception:  # noqa: BLE001 - still away: try again
                self.degraded = True
                continue
            self._warned = False
            logger.info(
                "shared state %s answers again: deciding with it (%s)",
                self.url.safe,
                made_alone(self.fallbacks),
            )
            return

    # ------------------------------------------------------------------ one control plane

    def _body(self, kind: str) -> dict[str, Any]:
        engine = self.engine
        index, started, expires = engine.timeline_state()
        doc = scenario_mod.model_document(engine.scenario)
        doc["name"] = engine.scenario.label
        return {
            "origin": self.id,
            "token": secrets.token_hex(8),
            "kind": kind,
            "scenario": doc,
            "source": engine.source,
            "seed": str(engine.seed),
            "seed_source": engine.seed_source,
            "paused": engine.paused,
            "phase": index,
            "started": repr(started),
            "expires": None if expires is None else repr(expires),
        }

    def _local_change(self, kind: str) -> None:
        """The engine changed here (the control API, --watch; any thread): tell the others."""
        if getattr(self._adopting, "on", False):
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started: joining shares it
        body = self._body(kind)
        if self.degraded:
            self._dirty = True
            return
        self._mine.add(body["token"])  # before a change of another replica can clear it
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(self._publish_change(kind, body))
        else:
            loop.call_soon_threadsafe(lambda: self._spawn(self._publish_change(kind, body)))

    async def _publish_change(self, kind: str, body: dict[str, Any]) -> None:
        try:
            await self._publish(kind, body, "change")
        except Exception as exc:  # noqa: BLE001
            self._mine.discard(body["token"])
            self._dirty = True
            self._lost(exc)

    async def _publish(self, kind: str, body: dict[str, Any], mode: str) -> None:
        args: list[str | int] = [mode, kind if mode == "change" else "apply"]
        args += [json.dumps(body), CHANNEL, self.epoch, self.version]
        reply = await asyncio.wait_for(self._change(keys=[CONTROL], args=args), CONTROL_TIMEOUT)
        if _text(reply[0]) == "exists":  # init: another replica was first
            self.adopted = True
            self._mine.discard(body["token"])
            epoch, version, gen, since = (int(_text(v)) for v in reply[1:5])
            self._receive(epoch, version, gen, since, json.loads(_text(reply[5])))
            return
        epoch, version, gen, since = (int(v) for v in reply[1:5])
        self._receive(epoch, version, gen, since, body)

    async def _listen(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                epoch, version, gen, since, body = _text(message["data"]).split(" ", 4)
                self._receive(int(epoch), int(version), int(gen), int(since), json.loads(body))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the connection went: reconnect
            if not self._stopping:
                self._lost(exc)
        finally:
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001
                pass

    def _receive(
        self, epoch: int, version: int, gen: int, since: int, body: dict[str, Any]
    ) -> None:
        """A change (ours confirmed, or another replica's): apply it if it is newer."""
        if epoch <= self.epoch:
            return  # already applied, or older than what we have
        token = body.get("token")
        if body.get("origin") == self.id and token in self._mine:
            self._mine.discard(token)  # ours, still in force here: just the numbers
        else:
            self._mine.clear()  # any change of ours still on its way was overwritten here
            self._adopt(version, gen, since, body)
        self.epoch, self.version, self.gen, self.since = epoch, version, gen, since

    def _adopt(self, version: int, gen: int, since: int, body: dict[str, Any]) -> None:
        engine = self.engine
        self._adopting.on = True
        try:
            if version != self.version:
                scenario = scenario_mod.load_data(body["scenario"], "shared state")
                engine.apply(scenario, body.get("source"), int(body["seed"]))
                engine.seed_source = body.get("seed_source") or "apply"
                if self.on_apply is not None:  # --workers: the workers' copies too
                    self.on_apply()
                logger.info(
                    "scenario %s applied from the shared state (version %d, seed %s)",
                    scenario.label,
                    version,
                    body["seed"],
                )
            elif since != self.since:
                engine.reset()
                if self.on_reset is not None:
                    self.on_reset()
                logger.info("counters reset (shared state)")
            if engine.paused != bool(body.get("paused")):
                engine.paused = bool(body.get("paused"))
                logger.info(
                    "injection %s (shared state)",
                    "paused: passing everything through" if engine.paused else "resumed",
                )
            expires = body.get("expires")
            engine.set_timeline(
                int(body["phase"]),
                float(body["started"]),
                None if expires is None else float(expires),
            )
        finally:
            self._adopting.on = False
        if self.reschedule is not None:
            self.reschedule()

    # ------------------------------------------------------------------ cluster view

    def _member(self) -> str:
        return json.dumps(
            {"id": self.id, "since": self.since, "at": time.time(), "stats": self.engine.stats()}
        )

    async def _beat(self) -> None:
        key = f"{PREFIX}replica:{self.id}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, self._member(), px=int(MEMBER_TTL * 1000))
        pipe.sadd(MEMBERS, self.id)
        await asyncio.wait_for(pipe.execute(), CONTROL_TIMEOUT)

    async def _heartbeats(self) -> None:
        while not self._stopping:
            if not self.degraded:
                try:
                    await self._beat()
                except TimeoutError:
                    self._suspect()  # a ping tells: away, or only this process busy
                except Exception as exc:  # noqa: BLE001
                    self._lost(exc)
            await asyncio.sleep(HEARTBEAT)

    async def cluster_stats(self) -> dict[str, Any]:
        """Every live replica's counts since the cluster's last apply or reset, added up."""
        if self.degraded or self._redis is None:
            raise StateUnavailable(f"shared state {self.url.safe} is unreachable")
        try:
            await self._beat()
            ids = sorted(_text(i) for i in await self._redis.smembers(MEMBERS))
            raw = await self._redis.mget([f"{PREFIX}replica:{i}" for i in ids]) if ids else []
        except Exception as exc:  # noqa: BLE001
            self._lost(exc)
            raise StateUnavailable(f"shared state {self.url.safe} is unreachable") from exc
        gone = [i for i, r in zip(ids, raw, strict=True) if r is None]
        if gone:
            self._spawn(self._forget(gone))
        mine = self.engine.stats()
        rules = {(r["phase"], r["name"]): dict(r, seen=0, injected=0) for r in mine["rules"]}
        out = dict(mine, scope="cluster", state=self.url.safe, requests=0, injected=0)
        members = []
        for value in raw:
            if value is None:
                continue
            member = json.loads(_text(value))
            stats, counted = member["stats"], member["since"] == self.since
            members.append(
                {
                    "id": member["id"],
                    "requests": stats["requests"],
                    "injected": stats["injected"],
                    "counted": counted,
                    "age": round(max(0.0, time.time() - member["at"]), 3),
                }
            )
            if not counted:  # counts of an older scenario (it has not heard of the new one)
                continue
            out["requests"] += stats["requests"]
            out["injected"] += stats["injected"]
            for rule in stats["rules"]:
                total = rules.get((rule["phase"], rule["name"]))
                if total is not None:
                    total["seen"] += rule["seen"]
                    total["injected"] += rule["injected"]
        out["rules"] = list(rules.values())
        out["replicas"] = len(members)
        out["members"] = members
        return out

    async def _forget(self, ids: list[str]) -> None:
        """Drop replicas that stopped reporting from the member set."""
        try:
            await asyncio.wait_for(self._redis.srem(MEMBERS, *ids), CONTROL_TIMEOUT)
        except Exception:  # noqa: BLE001 - the next look drops them again
            pass

    # ------------------------------------------------------------------ observing

    def health(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "url": self.url.safe,
            "status": "degraded" if self.degraded else "ok",
            "replica": self.id,
            "version": self.version,
            "fallbacks": self.fallbacks,
        }

    def metrics_text(self) -> str:
        return (
            "# HELP chaosproxy_state_fallbacks_total Decisions made with this replica's own "
            "state because the shared state did not answer in time.\n"
            "# TYPE chaosproxy_state_fallbacks_total counter\n"
            f"chaosproxy_state_fallbacks_total {self.fallbacks}\n"
            "# HELP chaosproxy_state_degraded 1 while the shared state is unreachable.\n"
            "# TYPE chaosproxy_state_degraded gauge\n"
            f"chaosproxy_state_degraded {1 if self.degraded else 0}\n"
        )


def _password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password
    return unquote(password) if password else None
