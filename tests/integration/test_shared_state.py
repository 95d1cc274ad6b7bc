"""``--state redis://``: three ``chaosproxy run`` processes sharing one Redis act as one proxy.

One redis-server and three replicas for the module (the third with ``--workers 2``: its
coordinator decides against the shared state for its workers); each test PUTs its
scenario on one replica (the others take it through Redis) and drives the replicas in
turn. The last test kills Redis mid-run and starts it again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.scenario import load_text
from tests.support import RedisServer, UpstreamServer, free_port, running_redis, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Replica:
    def __init__(self, upstream: str, state: str, *extra: str) -> None:
        self.port, self.admin = free_port(), free_port()
        self.url, self.api = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.admin}"
        cmd = [
            sys.executable, "-m", "chaosproxy.cli", "run", "--upstream", upstream,
            "--listen", f"127.0.0.1:{self.port}", "--admin", f"127.0.0.1:{self.admin}",
            "--state", state, *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.http = requests.Session()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"a replica exited: {''.join(self.lines)}")
        try:
            return self.http.get(f"{self.api}/healthz", timeout=5).json()["status"] == "ok"
        except requests.ConnectionError:
            return False

    def get(self, path: str, **headers: str) -> requests.Response:
        return self.http.get(self.url + path, headers=headers, timeout=10)

    def api_get(self, path: str) -> Any:
        return self.http.get(self.api + path, timeout=10).json()

    def api_post(self, path: str, body: Any = None) -> Any:
        reply = self.http.post(self.api + path, json=body, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return "".join(self.lines)


class Cluster:
    def __init__(self, redis: RedisServer, replicas: list[Replica]) -> None:
        self.redis = redis
        self.replicas = replicas

    def apply(self, scenario: str) -> int:
        """PUT ``scenario`` on the first replica; return once every replica runs it."""
        first = self.replicas[0]
        reply = first.http.put(f"{first.api}/scenario", data=scenario, timeout=10)
        assert reply.status_code == 200, reply.text
        name = reply.json()["name"]
        for replica in self.replicas:
            wait_until(lambda r=replica: r.api_get("/scenario")["name"] == name, timeout=5)
        return len(self.replicas)

    def drive(self, path: str, n: int, **headers: str) -> list[int]:
        """``n`` requests, to the replicas in turn; their statuses."""
        return [
            self.replicas[i % len(self.replicas)].get(path, **headers).status_code for i in range(n)
        ]


@pytest.fixture(scope="module")
def cluster(upstream: UpstreamServer) -> Iterator[Cluster]:
    with running_redis() as redis:
        # exact counts: a loaded machine may miss the default 50 ms, and such a request is
        # decided by its replica alone (tests/state test that bound, with a hung Redis)
        state = redis.url + "?timeout=1s"
        replicas = [
            Replica(upstream.url, state),
            Replica(upstream.url, state),
            Replica(upstream.url, state, "--workers", "2"),
        ]
        try:
            for replica in replicas:
                wait_until(replica.ready, timeout=60, interval=0.05)
            yield Cluster(redis, replicas)
        finally:
            for replica in replicas:
                replica.stop()


def test_a_rate_limit_admits_its_limit_per_window_across_the_replicas(cluster: Cluster) -> None:
    cluster.apply(
        "name: limited\nrules:\n"
        "  - {match: {path: /rl}, fault: {type: rate_limit, limit: 10, per: 2s}}\n"
    )
    first = cluster.drive("/rl", 25)
    assert first.count(200) == 10 and first.count(429) == 15
    assert first[:10] == [200] * 10  # the window's first ten pass, whichever replica
    retry = int(cluster.replicas[0].get("/rl").headers["Retry-After"])
    assert 1 <= retry <= 2
    time.sleep(2.1)  # the next window
    second = cluster.drive("/rl", 15)
    assert second.count(200) == 10 and second[:10] == [200] * 10


def test_times_every_and_per_request_count_once_for_the_cluster(cluster: Cluster) -> None:
    cluster.apply(
        "name: counted\nrules:\n"
        "  - {name: five, match: {path: /times}, times: 5, fault: {type: error, status: 503}}\n"
        "  - {name: third, match: {path: /every}, every: 3, fault: {type: error, status: 500}}\n"
        "  - {name: twice, match: {path: /retry}, per_request: {times: 2},\n"
        "     fault: {type: error, status: 502}}\n"
    )
    assert cluster.drive("/times", 15) == [503] * 5 + [200] * 10
    assert cluster.drive("/every", 12) == [200, 200, 500] * 4
    # three attempts of one request, each on another replica: the first two fail
    assert cluster.drive("/retry", 3, **{"Idempotency-Key": "k1"}) == [502, 502, 200]
    # /stats?scope=cluster adds the replicas' counts up (each saw a third of them)
    stats = wait_until(
        lambda: (s := cluster.replicas[1].api_get("/stats?scope=cluster"))["requests"] == 30 and s,
        timeout=5,
    )
    assert stats["scope"] == "cluster" and stats["replicas"] == 3
    assert stats["injected"] == 5 + 4 + 2
    rules = {r["name"]: (r["seen"], r["injected"]) for r in stats["rules"]}
    assert rules == {"five": (15, 5), "third": (12, 4), "twice": (3, 2)}
    assert [cluster.replicas[i].api_get("/stats")["requests"] for i in range(3)] == [10] * 3


SEEDED = """
name: seeded
seed: 1234
rules:
  - {name: coin, match: {path: /coin}, probability: 0.4, fault: {type: error, status: 503}}
  - {name: sometimes, match: {path: /coin}, every: 2, probability: 0.5,
     fault: {type: error, status: 502}}
  - {name: slow-ish, match: {path: /coin}, probability: 0.3,
     fault: {type: error, status: 500}}
"""


def test_seeded_decisions_equal_one_process(cluster: Cluster) -> None:
    cluster.apply(SEEDED)
    engine = Engine(load_text(SEEDED))
    expected = []
    for _ in range(60):
        decision = engine.decide(SimpleRequest("GET", "127.0.0.1", "/coin"))
        expected.append(200 if decision is None else decision.rule.fault[0].status)
    assert cluster.drive("/coin", 60) == expected
    assert {r.api_get("/scenario")["seed"] for r in cluster.replicas} == {1234}
    # at start, one replica shared its scenario, the two others took the cluster's
    starts = ["".join(r.lines).split(" | control API")[0] for r in cluster.replicas]
    assert sum("(the shared state's)" in line for line in starts) == 2, starts


def test_the_control_plane_reaches_every_replica(cluster: Cluster) -> None:
    cluster.apply(
        "name: storm\nphases:\n"
        "  - {name: calm, duration: 10m}\n"
        "  - name: outage\n"
        "    rules: [{fault: {type: error, status: 503}}]\n"
    )
    a, b, c = cluster.replicas
    assert cluster.drive("/p", 3) == [200] * 3
    a.api_post("/scenario/phase", {"phase": "outage"})
    jumped = time.monotonic()
    for replica in (b, c):
        wait_until(lambda r=replica: r.api_get("/scenario")["phase"] == "outage", interval=0.002)
    assert time.monotonic() - jumped < 0.1  # both others within 100 ms of the jump's answer
    assert cluster.drive("/p", 3) == [503] * 3
    b.api_post("/pause")
    wait_until(lambda: all(r.api_get("/scenario")["paused"] for r in (a, c)), timeout=1)
    assert cluster.drive("/p", 3) == [200] * 3
    c.api_post("/resume")
    wait_until(lambda: not any(r.api_get("/scenario")["paused"] for r in (a, b)), timeout=1)
    c.api_post("/reset")  # the phase clock back to the first phase, everywhere
    wait_until(lambda: all(r.api_get("/scenario")["phase"] == "calm" for r in (a, b)), timeout=1)
    assert cluster.drive("/p", 3) == [200] * 3
    health = b.api_get("/healthz")
    assert health["status"] == "ok" and health["state"]["status"] == "ok"
    assert health["state"]["backend"] == "redis"


def test_redis_killed_and_restarted_loses_no_request(cluster: Cluster) -> None:
    cluster.apply(
        "name: during-outage\nrules:\n"
        "  - {match: {path: /out}, every: 2, fault: {type: error, status: 503}}\n"
    )
    statuses: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def drive() -> None:
        i = 0
        while not stop.is_set():
            try:
                reply = cluster.replicas[i % 3].get("/out")
                statuses.append(reply.status_code)
                assert reply.elapsed.total_seconds() < 1.0, reply.elapsed
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
            i += 1

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        wait_until(lambda: len(statuses) >= 10, timeout=10)
        cluster.redis.kill()
        wait_until(lambda: all(_degraded(r) for r in cluster.replicas), timeout=10)
        during = len(statuses)
        wait_until(lambda: len(statuses) >= during + 15, timeout=10)  # served meanwhile
        cluster.redis.start()
        wait_until(lambda: not any(_degraded(r) for r in cluster.replicas), timeout=10)
        after = len(statuses)
        wait_until(lambda: len(statuses) >= after + 10, timeout=10)
    finally:
        stop.set()
        driver.join(timeout=30)
    assert failures == []
    assert set(statuses) <= {200, 503}
    for replica in cluster.replicas:
        metrics = replica.http.get(f"{replica.api}/metrics", timeout=10).text
        assert "chaosproxy_state_degraded 0" in metrics
        text = "".join(replica.lines)
        assert text.count("unreachable") == 1, text  # one warning for the outage
        assert "answers again" in text
    fallbacks = [
        _metric(r.http.get(f"{r.api}/metrics", timeout=10).text, "chaosproxy_state_fallbacks_total")
        for r in cluster.replicas
    ]
    assert sum(fallbacks) >= 15
    # rejoined: the cluster counts as one again (Redis came back empty: counting starts over)
    cluster.apply(
        "name: after-outage\nrules:\n"
        "  - {match: {path: /after}, times: 2, fault: {type: error, status: 503}}\n"
    )
    assert cluster.drive("/after", 6) == [503, 503, 200, 200, 200, 200]


def _degraded(replica: Replica) -> bool:
    return bool(replica.api_get("/healthz")["status"] == "degraded")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")
