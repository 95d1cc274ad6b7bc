"""Faults under churn: clients that leave, upstreams that vanish, pooled connections."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import requests

from tests.reliability.census import census, settled
from tests.reliability.rawwire import RawUpstream, connect, read_head
from tests.support import UpstreamServer, wait_until

SLOW = {
    "seed": 3,
    "rules": [
        {
            "name": "delay",
            "match": {"path": "/delay"},
            "fault": {"type": "latency", "delay": "30s"},
        },
        {"name": "hold", "match": {"path": "/hold"}, "fault": {"type": "timeout"}},
        {
            "name": "late",
            "match": {"path": "/late"},
            "fault": {"type": "latency", "delay": "30s", "on": "response"},
        },
        {
            "name": "trickle",
            "match": {"path": "/bytes/*"},
            "fault": {"type": "throttle", "rate": "2KB/s"},
        },
    ],
}


def _leave(sock: socket.socket, reset: bool) -> None:
    if reset:  # an RST instead of a FIN, as a killed process or a timed-out client may
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_clients_leaving_delayed_held_and_throttled_requests_leave_nothing_behind(
    make_proxy, upstream: UpstreamServer, how: str
) -> None:
    proxy = make_proxy(SLOW)
    # warm up: the throttle relay opens its listener on first use, then stays
    assert requests.get(f"{proxy.url}/bytes/10", timeout=10).content
    wait_until(lambda: proxy.addon.in_flight == 0)
    baseline = census(proxy)
    paths = ["/delay", "/hold", "/late", "/bytes/200000"] * 5
    socks = []
    for path in paths:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(sock)
    # every request is in its fault: waiting, or trickling its body
    wait_until(lambda: proxy.addon.in_flight == len(paths), timeout=15)
    wait_until(lambda: proxy.addon.held >= 15, timeout=15)  # delay, hold, late
    assert census(proxy)["connections"] >= len(paths)
    for sock in socks:
        _leave(sock, how == "reset")
    started = time.monotonic()
    after = wait_until(lambda: settled(proxy, baseline), timeout=15)
    assert time.monotonic() - started < 10  # released early, not after the 30 s delays
    assert after["held"] == after["in_flight"] == after["waiters"] == after["early"] == 0
    assert after["relay"] == 0
    # the proxy serves on, and the slow rules still act
    assert requests.get(f"{proxy.url}/echo", timeout=10).status_code == 200
    stats = {r["name"]: r["injected"] for r in proxy.stats["rules"]}
    assert stats == {"delay": 5, "hold": 5, "late": 5, "trickle": 6}


def test_a_client_leaving_during_a_large_upload_leaves_nothing_behind(make_proxy) -> None:
    proxy = make_proxy(
        {"seed": 1, "rules": [{"match": {"path": "/never"}, "fault": {"type": "error"}}]}
    )
    requests.get(f"{proxy.url}/echo", timeout=10)
    baseline = census(proxy)
    socks = []
    for i in range(10):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        framing = "Transfer-Encoding: chunked" if i % 2 else "Content-Length: 5000000"
        sock.sendall(f"POST /echo HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
        sock.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n" if i % 2 else b"x" * 300_000)
        socks.append(sock)
    wait_until(lambda: census(proxy)["connections"] >= 10, timeout=10)
    for i, sock in enumerate(socks):
        _leave(sock, reset=i % 3 == 0)
    wait_until(lambda: settled(proxy, baseline), timeout=15)
    assert requests.post(f"{proxy.url}/echo", data=b"ok", timeout=10).status_code == 200


def _vanishing(kind: str):
    """An upstream that goes away in the middle of its answer, in several ways."""

    def handler(conn: socket.socket) -> None:
        read_head(conn)
        if kind == "before-answer":
            return
        if kind == "reset-before-answer":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        size = 2_000_000 if kind.startswith("large") else 1000
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        conn.sendall(b"y" * (size // 10))
        if kind.endswith("reset"):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return handler


@pytest.mark.parametrize(
    "kind, outcome",
    [
        ("before-answer", 502),
        ("reset-before-answer", 502),
        ("small-body-close", 502),
        ("small-body-reset", 502),
        ("large-body-close", "cut"),  # the head already went out as the body streamed
        ("large-body-reset", "cut"),
    ],
)
def test_an_upstream_vanishing_mid_answer_gives_502_or_a_cut(
    make_proxy, kind: str, outcome: int | str
) -> None:
    with RawUpstream(_vanishing(kind)) as up:
        proxy = make_proxy(
            {"seed": 1, "rules": [{"match": {"path": "/never"}, "fault": {"type": "error"}}]},
            upstream=up.url,
        )
        baseline_requests = 0
        for _ in range(3):  # each time; the proxy keeps serving
            start = time.monotonic()
            try:
                r = requests.get(f"{proxy.url}/x", timeout=15)
                got: int | str = r.status_code
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
                got = "cut"
            assert got == outcome
            assert time.monotonic() - start < 10  # never a hang
            baseline_requests += 1
        assert proxy.stats["requests"] == baseline_requests
        wait_until(lambda: proxy.addon.in_flight == 0 and not census(proxy)["connections"])
        assert not up.errors


def test_an_upstream_vanishing_while_a_response_fault_waits(make_proxy) -> None:
    with RawUpstream(_vanishing("small-body-close")) as up:
        proxy = make_proxy(
            {
                "seed": 1,
                "rules": [{"fault": {"type": "latency", "delay": "50ms", "on": "response"}}],
            },
            upstream=up.url,
        )
        assert requests.get(f"{proxy.url}/x", timeout=15).status_code == 502
        wait_until(lambda: proxy.addon.in_flight == 0)


def test_a_reset_or_killed_connection_never_poisons_the_next_request_on_a_pool(
    make_proxy, upstream: UpstreamServer
) -> None:
    proxy = make_proxy(
        {
            "seed": 1,
            "rules": [
                {"match": {"path": "/reset"}, "fault": {"type": "abort", "how": "reset"}},
                {"match": {"path": "/close"}, "fault": {"type": "abort", "how": "close"}},
                {"match": {"path": "/hang"}, "fault": {"type": "timeout"}},
                {"match": {"path": "/cut"}, "fault": {"type": "malformed", "mode": "truncate"}},
                {
                    "match": {"path": "/then-reset"},
                    "fault": {"type": "timeout", "after": "50ms", "then": "reset"},
                },
            ],
        }
    )
    session = requests.Session()
    session.trust_env = False
    failures: dict[str, int] = {}
    for i in range(60):
        path = ["/reset", "/close", "/hang", "/cut", "/then-reset"][i % 5]
        try:
            target = "/json" if path == "/cut" else path
            r = session.get(
                f"{proxy.url}{path}?to={target}", timeout=0.5 if path == "/hang" else 10
            )
            r.content  # noqa: B018 - read the whole (possibly cut) body
        except requests.RequestException:
            failures[path] = failures.get(path, 0) + 1
        ok = session.get(f"{proxy.url}/echo?after={path}", timeout=10)
        assert ok.status_code == 200 and ok.json()["path"] == f"/echo?after={path}"
    # every injected failure reached the client as one, and never the request after it
    assert failures == {"/reset": 12, "/close": 12, "/hang": 12, "/cut": 12, "/then-reset": 12}
    wait_until(lambda: proxy.addon.held == 0 and proxy.addon.in_flight == 0, timeout=10)


def test_many_clients_coming_and_going_at_once(make_proxy, upstream: UpstreamServer) -> None:
    proxy = make_proxy(SLOW)
    requests.get(f"{proxy.url}/bytes/10", timeout=10)
    wait_until(lambda: proxy.addon.in_flight == 0)
    baseline = census(proxy)
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        try:
            for i in range(15):
                path = ["/delay", "/hold", "/late", "/bytes/50000", "/echo"][(seed + i) % 5]
                with connect(proxy.port, timeout=10) as sock:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    if path == "/echo":
                        assert b" 200 " in sock.recv(4096)
                    elif (seed + i) % 2:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    wait_until(lambda: settled(proxy, baseline), timeout=20)
    assert requests.get(f"{proxy.url}/echo", timeout=10).status_code == 200
