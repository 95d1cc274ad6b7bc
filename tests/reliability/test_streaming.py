"""Large bodies stream through the proxy when no fault needs them, and only then."""

from __future__ import annotations

import hashlib
import socket
import threading

import pytest
import requests

from tests.reliability.rawwire import (
    RawUpstream,
    connect,
    header,
    read_chunked,
    read_exactly,
    read_head,
)
from tests.support import UpstreamServer, body_bytes, wait_until

FIRST = 256 * 1024
TOTAL = 2 * 1024 * 1024
PASSTHROUGH = {"seed": 1, "rules": [{"match": {"path": "/nothing"}, "fault": {"type": "error"}}]}


def _frame(data: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_download_streams_before_the_upstream_has_finished(make_proxy, chunked: bool) -> None:
    payload = body_bytes(TOTAL, seed=3)
    release = threading.Event()

    def upstream(conn: socket.socket) -> None:
        read_head(conn)
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % TOTAL
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n")
        conn.sendall(_frame(payload[:FIRST], chunked))
        # The rest only once the client has the first part: a proxy that buffers the
        # whole body never gets here and the client times out.
        if not release.wait(20):
            return
        conn.sendall(_frame(payload[FIRST:], chunked))
        if chunked:
            conn.sendall(b"0\r\n\r\n")

    with RawUpstream(upstream) as up:
        proxy = make_proxy(PASSTHROUGH, upstream=up.url)
        with connect(proxy.port, timeout=10) as sock:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            head, rest = read_head(sock)
            if chunked:
                assert header(head, "transfer-encoding") == "chunked"
            else:
                assert header(head, "content-length") == str(TOTAL)
            first = read_exactly(sock, FIRST, rest)  # arrives while the upstream waits
            assert not release.is_set()
            release.set()
            if chunked:
                body = read_chunked(sock, first)
            else:
                body = read_exactly(sock, TOTAL, first)
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    assert not up.errors


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_streams_before_the_client_has_finished(make_proxy, chunked: bool) -> None:
    payload = body_bytes(TOTAL, seed=5)
    received = bytearray()

    def upstream(conn: socket.socket) -> None:
        head, rest = read_head(conn)
        if header(head, "transfer-encoding") == "chunked":
            body = read_chunked(conn, rest)
        else:
            length = int(header(head, "content-length") or 0)
            received.extend(rest)
            while len(received) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)
            body = bytes(received)
        digest = hashlib.sha256(body).hexdigest().encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(digest), digest))

    def arrived() -> bool:
        if chunked:  # the upstream decodes chunks as a whole; watch the socket instead
            return up.connections > 0
        return len(received) >= FIRST

    with RawUpstream(upstream) as up:
        proxy = make_proxy(PASSTHROUGH, upstream=up.url)
        with connect(proxy.port, timeout=10) as sock:
            framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % TOTAL
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n")
            sock.sendall(_frame(payload[:FIRST], chunked))
            # The proxy has contacted the upstream (and, with Content-Length, passed on the
            # first part) before the client sent the rest.
            wait_until(arrived, timeout=10)
            sock.sendall(_frame(payload[FIRST:], chunked))
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            head, rest = read_head(sock)
            answer = read_exactly(sock, int(header(head, "content-length") or 0), rest)
    assert answer == hashlib.sha256(payload).hexdigest().encode()
    assert not up.errors
    assert proxy.stats["requests"] == 1  # decided once, from the head


def test_a_rule_on_the_body_still_sees_a_large_body(make_proxy) -> None:
    proxy = make_proxy(
        {
            "seed": 1,
            "rules": [
                {
                    "name": "needle",
                    "match": {"body": "*NEEDLE*"},
                    "fault": {"type": "error", "status": 418},
                }
            ],
        }
    )
    haystack = body_bytes(1_000_000, seed=1).replace(b"NEEDLE", b"xxxxxx")
    s = requests.Session()
    assert s.post(f"{proxy.url}/echo", data=haystack + b"NEEDLE").status_code == 418
    r = s.post(f"{proxy.url}/echo", data=haystack)
    assert r.status_code == 200
    assert r.json()["body_sha256"] == hashlib.sha256(haystack).hexdigest()
    stats = proxy.stats
    assert (stats["requests"], stats["injected"]) == (2, 1)


def test_faults_on_large_bodies_still_act(make_proxy, upstream: UpstreamServer) -> None:
    proxy = make_proxy(
        {
            "seed": 1,
            "annotate": True,
            "rules": [
                {
                    "name": "swap",
                    "match": {"path": "/bytes/600000"},
                    "fault": {"type": "error", "status": 502, "on": "response"},
                },
                {
                    "name": "slow",
                    "match": {"path": "/bytes/700000"},
                    "fault": {"type": "latency", "delay": "10ms"},
                },
                {
                    "name": "refuse",
                    "match": {"method": "PUT"},
                    "fault": {"type": "error", "status": 507},
                },
            ],
        }
    )
    s = requests.Session()
    swapped = s.get(f"{proxy.url}/bytes/600000")
    assert swapped.status_code == 502 and swapped.json()["rule"] == "swap"
    slow = s.get(f"{proxy.url}/bytes/700000?seed=2")
    assert slow.headers["X-Chaos-Rule"] == "slow"  # set before the body streamed
    assert slow.content == body_bytes(700_000, seed=2)
    before = len(upstream.received)
    refused = s.put(f"{proxy.url}/echo", data=iter([body_bytes(300_000)]))  # chunked upload
    assert refused.status_code == 507
    assert len(upstream.received) == before  # decided from the head, never sent upstream
    assert proxy.addon.in_flight == 0 and not proxy.addon._early


def test_the_engine_decides_from_the_head_unless_a_rule_needs_the_body() -> None:
    from chaosproxy.core.engine import Engine, SimpleRequest
    from chaosproxy.core.scenario import load_data

    engine = Engine(
        load_data(
            {
                "seed": 1,
                "rules": [
                    {
                        "name": "body",
                        "match": {"path": "/a", "json": {"x": "1"}},
                        "fault": {"type": "error"},
                    },
                    {"name": "all", "match": {"method": "PUT"}, "fault": {"type": "error"}},
                ],
            }
        )
    )
    assert engine.decide_without_body(SimpleRequest("POST", "h", "/a")) == (False, None)
    assert engine.requests == 0  # nothing counted: the addon decides once the body is in
    assert engine.decide_without_body(SimpleRequest("POST", "h", "/b")) == (True, None)
    decided, decision = engine.decide_without_body(SimpleRequest("PUT", "h", "/b"))
    assert decided and decision is not None and decision.name == "all"
    assert (engine.requests, engine.injected) == (2, 1)
    engine.pause()
    assert engine.decide_without_body(SimpleRequest("POST", "h", "/a")) == (True, None)
