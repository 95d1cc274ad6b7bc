"""The ``ws_*`` faults through a real proxy, with the ``websockets`` library's client and
server: messages dropped, delayed, corrupted, sockets closed with a code; reverse and
forward mode; seeded runs repeat; the decision log and the metrics count what happened.
Run this file on Python 3.11 / mitmproxy 11 and on Python 3.12 / mitmproxy 12."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

from tests.support import self_signed, wait_until

#: how long a test waits to be sure a message does not come
QUIET = 0.3


def _handler(conn: ServerConnection) -> None:
    """``/echo``: each message back as it came; ``/stamp``: each message back as JSON with
    the time (monotonic, same process) the server got it; ``/push``: N messages on its own
    after the client's first message says N."""
    path = conn.request.path if conn.request is not None else ""
    try:
        for message in conn:
            if path == "/stamp":
                conn.send(json.dumps({"echo": message, "at": time.monotonic()}))
            elif path == "/push":
                for i in range(int(message)):
                    conn.send(f"push {i}")
            else:
                conn.send(message)
    except ConnectionClosed:
        pass


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[str]:
    """A websockets server on a free loopback port: its ``http://`` URL."""
    server: Server = serve(_handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(5)


def _ws(proxy: Any, path: str) -> ClientConnection:
    return connect(proxy.url.replace("http://", "ws://") + path, open_timeout=10)


def _rule(fault: Any, name: str = "ws") -> dict[str, Any]:
    return {"rules": [{"name": name, "fault": fault}]}


def _quiet(conn: ClientConnection) -> bool:
    """True when nothing more arrives for a while."""
    try:
        conn.recv(timeout=QUIET)
    except TimeoutError:
        return True
    return False


def _socket_record(proxy: Any) -> Any:
    return wait_until(lambda: next((d for d in proxy.decisions if d.websocket), None))


def test_passthrough_keeps_every_message_and_a_ws_rule_leaves_plain_http_alone(
    make_proxy, ws_upstream: str
) -> None:
    proxy = make_proxy(_rule({"type": "ws_drop", "probability": 1}), upstream=ws_upstream)
    proxy.apply({"rules": []})
    with _ws(proxy, "/echo") as conn:
        for i in range(20):
            conn.send(f"text {i} é")
            assert conn.recv(timeout=5) == f"text {i} é"
            conn.send(bytes([i, 0, 255]))
            assert conn.recv(timeout=5) == bytes([i, 0, 255])
    proxy.apply(_rule({"type": "ws_drop", "probability": 1}))
    # a plain request to the websocket server: the ws rule does not match it
    requests.get(f"{proxy.url}/echo", timeout=5)
    wait_until(lambda: len(proxy.decisions) == 2)
    assert [d.rule for d in proxy.decisions] == [None, None]
    assert proxy.decisions[0].status == 101


def _dropped_run(make_proxy: Any, ws_upstream: str, seed: int) -> tuple[list[str], Any]:
    fault = {"type": "ws_drop", "probability": 0.5, "direction": "client"}
    proxy = make_proxy(_rule(fault), seed=seed, upstream=ws_upstream)
    got: list[str] = []
    with _ws(proxy, "/echo") as conn:
        for i in range(30):
            conn.send(f"m{i}")
        try:
            while True:
                got.append(str(conn.recv(timeout=QUIET)))
        except TimeoutError:
            pass
    return got, _socket_record(proxy)


def test_ws_drop_drops_a_seeded_share_of_one_direction_and_repeats(
    make_proxy, ws_upstream: str
) -> None:
    first, record = _dropped_run(make_proxy, ws_upstream, seed=11)
    again, _ = _dropped_run(make_proxy, ws_upstream, seed=11)
    other, _ = _dropped_run(make_proxy, ws_upstream, seed=12)
    assert first == again  # the same seed drops the same messages
    assert first != other
    assert 5 < len(first) < 25 and first == sorted(first, key=lambda m: int(m[1:]))
    ws = record.websocket
    assert ws["client"] == {"seen": 30, "dropped": 30 - len(first), "delayed": 0, "corrupted": 0}
    assert ws["server"] == {"seen": len(first), "dropped": 0, "delayed": 0, "corrupted": 0}
    assert record.rule == "ws" and record.faults == ("ws_drop",) and record.status == 101
    assert ws["closed_by"] == "client" and ws["close_code"] == 1000


def test_ws_delay_holds_one_direction_in_order_and_not_the_other(
    make_proxy, ws_upstream: str
) -> None:
    fault = {"type": "ws_delay", "delay": "300ms", "direction": "server"}
    proxy = make_proxy(_rule(fault), upstream=ws_upstream)
    with _ws(proxy, "/stamp") as conn:
        sent = time.monotonic()
        for i in range(5):
            conn.send(f"m{i}")
        answers = [json.loads(conn.recv(timeout=5)) for _ in range(5)]
        arrived = time.monotonic()
    assert [a["echo"] for a in answers] == [f"m{i}" for i in range(5)]  # order kept
    assert answers[0]["at"] - sent < 0.25  # the client's messages were not held
    assert 0.3 <= arrived - sent < 1.5
    record = _socket_record(proxy)
    assert record.websocket["server"]["delayed"] == 5
    assert record.websocket["client"]["delayed"] == 0


def test_ws_delay_with_jitter_keeps_the_order(make_proxy, ws_upstream: str) -> None:
    fault = {"type": "ws_delay", "delay": "60ms", "jitter": "60ms", "direction": "client"}
    proxy = make_proxy(_rule(fault), seed=3, upstream=ws_upstream)
    with _ws(proxy, "/echo") as conn:
        for i in range(20):
            conn.send(f"m{i}")
        assert [conn.recv(timeout=5) for _ in range(20)] == [f"m{i}" for i in range(20)]


def test_ws_corrupt_changes_one_character_or_byte_and_keeps_text_valid(
    make_proxy, ws_upstream: str
) -> None:
    proxy = make_proxy(_rule({"type": "ws_corrupt", "direction": "server"}), upstream=ws_upstream)
    text, data = '{"price": 42, "city": "berlin"}', bytes(range(64))
    with _ws(proxy, "/echo") as conn:
        conn.send(text)
        got_text = conn.recv(timeout=5)
        conn.send(data)
        got_data = conn.recv(timeout=5)
    assert isinstance(got_text, str) and len(got_text) == len(text)
    assert sum(a != b for a, b in zip(got_text, text, strict=True)) == 1
    assert isinstance(got_data, bytes) and len(got_data) == len(data)
    assert sum(a != b for a, b in zip(got_data, data, strict=True)) == 1
    assert _socket_record(proxy).websocket["server"]["corrupted"] == 2


def test_ws_close_after_messages_closes_both_sides_with_the_code(
    make_proxy, ws_upstream: str
) -> None:
    fault = {
        "type": "ws_close",
        "code": 4001,
        "reason": "chaos says bye",
        "after_messages": 3,
        "direction": "server",
    }
    proxy = make_proxy(_rule(fault, "bye"), upstream=ws_upstream, admin=True)
    got: list[str] = []
    with _ws(proxy, "/push") as conn:
        conn.send("10")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                got.append(str(conn.recv(timeout=5)))
    assert got == ["push 0", "push 1", "push 2"]  # the third passes, then the close
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "chaos says bye")
    record = _socket_record(proxy)
    assert record.websocket["close_code"] == 4001 and record.websocket["closed_by"] == "proxy"
    metrics = requests.get(f"{proxy.admin_url}/metrics", timeout=5).text
    assert 'chaosproxy_websocket_closes_total{rule="bye",code="4001"} 1' in metrics
    assert (
        'chaosproxy_websocket_messages_total{rule="bye",direction="server",action="seen"} 3'
        in metrics
    )


def test_ws_close_after_a_time_closes_an_idle_socket(
    make_proxy, ws_upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy(_rule({"type": "ws_close", "after": "300ms"}), upstream=ws_upstream)
    with _ws(proxy, "/echo") as conn:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=5)
        waited = time.monotonic() - started
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert 0.25 <= waited < 2.0
    assert _socket_record(proxy).websocket["closed_by"] == "proxy"
    # the empty message that woke the layer comes after the socket ended: dropped, not sent
    # into the closing connection (which crashed mitmproxy's connection handler)
    assert not [r for r in caplog.records if "has crashed" in r.getMessage()]


def test_forward_mode_faults_a_websocket_through_connect(make_proxy, ws_upstream: str) -> None:
    fault = [
        {"type": "ws_corrupt", "direction": "client"},
        {"type": "ws_close", "code": 1001, "after_messages": 2, "direction": "client"},
    ]
    proxy = make_proxy(_rule(fault), forward=True)
    target = ws_upstream.replace("http://", "ws://") + "/echo"
    with connect(target, proxy=proxy.url, open_timeout=10) as conn:
        conn.send("hello")
        assert conn.recv(timeout=5) != "hello"
        conn.send("again")
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=5)
            conn.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    record = _socket_record(proxy)
    assert record.websocket["client"]["corrupted"] == 2


@pytest.fixture
def wss_upstream(tmp_path: Path) -> Iterator[str]:
    """The same server over TLS (a self-signed certificate made here): its ``https://`` URL."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server: Server = serve(_handler, "127.0.0.1", 0, ssl=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(5)


def test_wss_forward_through_mitmproxys_ca_and_reverse_to_a_tls_upstream(
    make_proxy, wss_upstream: str, tmp_path: Path
) -> None:
    fault = [
        {"type": "ws_corrupt", "direction": "server"},
        {"type": "ws_close", "code": 4002, "reason": "tls bye", "after_messages": 2},
    ]
    confdir = tmp_path / "mitm"
    forward = make_proxy(_rule(fault), forward=True, confdir=str(confdir), insecure=True)
    trust = ssl.create_default_context(cafile=str(confdir / "mitmproxy-ca-cert.pem"))
    target = wss_upstream.replace("https://", "wss://") + "/echo"
    with connect(target, proxy=forward.url, ssl=trust, open_timeout=10) as conn:
        conn.send("over tls")
        assert conn.recv(timeout=5) != "over tls"  # the echo came back corrupted
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "tls bye")
    assert _socket_record(forward).websocket["closed_by"] == "proxy"

    reverse = make_proxy(_rule(fault), upstream=wss_upstream, insecure=True)
    with _ws(reverse, "/echo") as conn:
        conn.send("plain to the proxy, tls behind it")
        assert conn.recv(timeout=5) != "plain to the proxy, tls behind it"
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002


def test_ws_close_counts_messages_an_earlier_fault_dropped(make_proxy, ws_upstream: str) -> None:
    fault = [
        {"type": "ws_drop", "probability": 1, "direction": "client"},
        {"type": "ws_corrupt", "direction": "client"},
        {"type": "ws_close", "after_messages": 2, "direction": "client"},
    ]
    proxy = make_proxy(_rule(fault), upstream=ws_upstream)
    with _ws(proxy, "/echo") as conn:
        conn.send("one")
        conn.send("two")
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=5)  # no echo: the server never got them
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    client = _socket_record(proxy).websocket["client"]
    assert client == {"seen": 2, "dropped": 2, "delayed": 0, "corrupted": 0}
