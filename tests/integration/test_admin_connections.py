"""Admin connections have a deadline for their request head and a cap (issue 22 item 9).

19,980 idle admin connections were accepted before; none was ever closed. The data path
shares the proxy's event loop, so it must keep serving while the admin port is flooded.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from chaosproxy.control import server
from chaosproxy.testing.api import ChaosProxy
from tests.support import wait_until


def admin_address(proxy: ChaosProxy) -> tuple[str, int]:
    parts = urlsplit(proxy.admin_url or "")
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def connect(proxy: ChaosProxy, held: list[socket.socket]) -> socket.socket:
    sock = socket.create_connection(admin_address(proxy), timeout=10)
    held.append(sock)
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """What the server sends until it closes (raises TimeoutError if it never does)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def silent(sock: socket.socket, seconds: float = 0.2) -> bool:
    """Nothing to read (no answer, no close) for ``seconds``."""
    readable, _, _ = select.select([sock], [], [], seconds)
    return not readable


def test_connections_beyond_the_cap_get_503_and_the_proxy_keeps_serving(
    make_proxy, monkeypatch, sockets
) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 8)
    monkeypatch.setattr(server, "HEADER_TIMEOUT", 60.0)  # the idle ones stay for the test
    proxy = make_proxy(admin=True)
    idle = [connect(proxy, sockets) for _ in range(8)]
    wait_until(lambda: requests.get(f"{proxy.url}/echo", timeout=5).status_code == 200)
    # the cap is reached once the server has accepted all eight; then every new one is
    # answered 503 (without sending anything) and closed
    over = [connect(proxy, sockets) for _ in range(40)]
    answers = [read_all(sock) for sock in over]
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers), answers[0]
    assert b'"error": "too many connections (at most 8); try again later"' in answers[0]
    assert all(silent(sock) for sock in idle)  # the first eight are still open, unanswered
    # the data path is unaffected
    for _ in range(5):
        assert requests.get(f"{proxy.url}/echo", timeout=5).status_code == 200
    assert requests.get(f"{proxy.admin_url}/healthz", timeout=5).status_code == 503
    # once some close, the admin API answers again
    for sock in idle[:2]:
        sock.close()
    wait_until(lambda: requests.get(f"{proxy.admin_url}/healthz", timeout=5).status_code == 200)


def test_a_request_sent_to_a_full_server_reads_the_503(make_proxy, monkeypatch, sockets) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 1)
    monkeypatch.setattr(server, "HEADER_TIMEOUT", 60.0)
    proxy = make_proxy(admin=True)
    connect(proxy, sockets)
    wait_until(lambda: requests.get(f"{proxy.admin_url}/healthz", timeout=5).status_code == 503)
    reply = requests.put(f"{proxy.admin_url}/scenario", data="rules: []\n" * 5000, timeout=5)
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"


def test_a_client_that_does_not_finish_its_head_in_time_is_closed(
    make_proxy, monkeypatch, sockets
) -> None:
    monkeypatch.setattr(server, "HEADER_TIMEOUT", 0.5)
    proxy = make_proxy(admin=True)
    idle = connect(proxy, sockets)
    slow = connect(proxy, sockets)
    start = time.monotonic()
    for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n"):  # never the blank line
        slow.sendall(part)
        time.sleep(0.2)
    assert read_all(slow) == b"" and read_all(idle) == b""
    took = time.monotonic() - start
    assert 0.5 <= took < 5, took
    # a keep-alive connection idle after its answer is closed too; prompt clients are served
    kept = connect(proxy, sockets)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = read_all(kept)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"status": "ok"' in answer
    assert requests.get(f"{proxy.admin_url}/healthz", timeout=5).status_code == 200
    print(f"slow head closed after {took:.2f} s (deadline 0.5 s)")


def test_a_client_trickling_its_body_is_answered_408_and_closed_at_the_deadline(
    make_proxy, monkeypatch, sockets
) -> None:
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 0.8)
    proxy = make_proxy(admin=True)
    slow = connect(proxy, sockets)
    start = time.monotonic()
    slow.sendall(b"PUT /scenario HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n")
    # a few bytes every 0.1 s: each read is well within the idle timeout, the whole is not
    while silent(slow, 0.1):
        assert time.monotonic() - start < 10, "the trickling client was never cut off"
        slow.sendall(b"rules: []\n")
    answer = b""
    try:  # the answer, then the close (a reset if our last bytes arrived unread)
        answer = read_all(slow)
    except ConnectionResetError:
        pass
    took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive whole within 0.8 s" in answer and b"connection: close" in answer
    assert 0.8 <= took < 5, took
    # a prompt request with a body is served as before
    reply = requests.put(f"{proxy.admin_url}/scenario", json={"name": "flaky"}, timeout=10)
    assert reply.status_code == 200, reply.text
    print(f"trickling body cut off after {took:.2f} s (deadline 0.8 s)")


def test_the_limits_are_documented_constants() -> None:
    assert server.HEADER_TIMEOUT == 10.0 and server.MAX_CONNECTIONS == 64
    assert server.REQUEST_TIMEOUT == 30.0


def test_only_put_scenario_takes_large_bodies(make_proxy) -> None:
    proxy = make_proxy(admin=True)
    big = '{"phase": "x", "pad": "' + "p" * server.MAX_SMALL_BODY + '"}'
    for path in ("/scenario/phase", "/explain"):
        reply = requests.post(f"{proxy.admin_url}{path}", data=big, timeout=10)
        assert reply.status_code == 413, path
        assert reply.json()["error"] == f"the body is over {server.MAX_SMALL_BODY} bytes"
    explained = requests.post(
        f"{proxy.admin_url}/explain",
        json={"url": "http://x/y", "body": "b" * (server.MAX_SMALL_BODY - 100)},
        timeout=10,
    )
    assert explained.status_code == 200 and explained.json()["fires"] is None
