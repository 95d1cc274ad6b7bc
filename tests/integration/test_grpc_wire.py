"""gRPC calls through the proxy, with a real grpcio client and server (issue 20, item 2).

The path that works on mitmproxy 11 and 12 alike: TLS on both sides. The client trusts the
proxy's CA (reverse mode to an ``https://`` upstream, or forward mode through CONNECT with
grpc's ``grpc.http_proxy`` option); mitmproxy does not take plaintext HTTP/2 (h2c prior
knowledge) from clients. The server is a grpcio server with a generic handler (no
generated code): ``test.Echo/Say`` (unary) and ``test.Echo/Count`` (server-streaming).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from chaosproxy.core.grpc_protocol import STATUS_CODES
from chaosproxy.testing.api import ChaosProxy
from tests.support import self_signed, wait_until


def _same(data: bytes) -> bytes:
    return data


SAY = "/test.Echo/Say"
COUNT = "/test.Echo/Count"


class EchoServer:
    """A TLS grpcio server on 127.0.0.1 that counts the calls it gets, per method."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()
        handler = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                with handler._lock:
                    handler.calls.append(details.method)
                if details.method == SAY:
                    return grpc.unary_unary_rpc_method_handler(
                        lambda request, context: b"echo:" + request, _same, _same
                    )
                if details.method == COUNT:

                    def count(request: bytes, context: Any) -> Iterator[bytes]:
                        for i in range(int(request or b"3")):
                            yield b"%d" % i

                    return grpc.unary_stream_rpc_method_handler(count, _same, _same)
                return None

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((Handler(),))
        credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
        self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def count(self, method: str) -> int:
        with self._lock:
            return self.calls.count(method)

    def stop(self) -> None:
        self.server.stop(0)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grpc")


@pytest.fixture(scope="module")
def echo(tls_dir: Path) -> Iterator[EchoServer]:
    cert, key = self_signed(tls_dir)
    server = EchoServer(cert, key)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reverse(echo: EchoServer, tls_dir: Path) -> Iterator[ChaosProxy]:
    """A reverse proxy to the TLS gRPC server, shared by this module's tests."""
    confdir = tls_dir / "mitm"
    with ChaosProxy(
        upstream=f"https://127.0.0.1:{echo.port}", insecure=True, confdir=str(confdir)
    ) as proxy:
        yield proxy


def _port(proxy: ChaosProxy) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def _ca(tls_dir: Path) -> bytes:
    return (tls_dir / "mitm" / "mitmproxy-ca-cert.pem").read_bytes()


@pytest.fixture
def proxy(reverse: ChaosProxy) -> Iterator[ChaosProxy]:
    yield reverse
    reverse.apply({"rules": []})
    reverse.reset()


@pytest.fixture
def channel(reverse: ChaosProxy, tls_dir: Path) -> Callable[..., grpc.Channel]:
    """Opens channels to the reverse proxy (closed after the test), each one connected
    through to the server by a first call: open it before applying the test's scenario."""
    opened: list[grpc.Channel] = []

    def make(service_config: dict[str, Any] | None = None) -> grpc.Channel:
        options: list[tuple[str, Any]] = []
        if service_config is not None:
            options.append(("grpc.service_config", json.dumps(service_config)))
        credentials = grpc.ssl_channel_credentials(root_certificates=_ca(tls_dir))
        ch = grpc.secure_channel(f"127.0.0.1:{_port(reverse)}", credentials, options=options)
        opened.append(ch)
        # connected on both legs before a test times a call (the scenario lets it through)
        assert _count(ch, 1) == [b"0"]
        return ch

    yield make
    for ch in opened:
        ch.close()


def _say(ch: grpc.Channel, timeout: float = 10.0) -> bytes:
    return ch.unary_unary(SAY, _same, _same)(b"hi", timeout=timeout)


def _count(ch: grpc.Channel, n: int = 3, timeout: float = 10.0) -> list[bytes]:
    return list(ch.unary_stream(COUNT, _same, _same)(b"%d" % n, timeout=timeout))


def _fails(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _records(proxy: ChaosProxy, path: str, n: int) -> list[Any]:
    """The decision records of ``path``, once there are ``n`` (a record is added when the
    flow is over, which may be just after the client has its answer)."""
    return wait_until(lambda: (r := [d for d in proxy.decisions if d.path == path])[n - 1 :] and r)


def _status_rule(method: str, code: object, **extra: object) -> dict[str, Any]:
    return {"match": {"grpc": method}, "fault": {"type": "grpc_status", "code": code, **extra}}


def test_grpc_status_reaches_unary_and_streaming_clients(
    proxy: ChaosProxy, channel: Callable[..., grpc.Channel], echo: EchoServer
) -> None:
    ch = channel()
    proxy.apply(
        {
            "rules": [
                _status_rule("test.Echo/Say", "UNAVAILABLE", message="try later: ünïcode 100%"),
                _status_rule("test.*/Count", 8),
            ]
        }
    )
    before = echo.count(SAY) + echo.count(COUNT)
    counted = proxy.addon.metrics.grpc_status[14]
    err = _fails(lambda: _say(ch))
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert err.details() == "try later: ünïcode 100%"  # percent-encoded on the wire
    err = _fails(lambda: _count(ch))
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rule grpc_status-2" in err.details()  # the default message names the rule
    assert echo.count(SAY) + echo.count(COUNT) == before  # the upstream was never called
    (record,) = _records(proxy, SAY, 1)
    assert (record.rule, record.faults, record.outcome) == (
        "grpc_status-1",
        ("grpc_status",),
        "response",
    )
    assert (record.status, record.grpc_status, record.upstream_status) == (200, 14, None)
    assert record.fault == "grpc_status UNAVAILABLE (14)"
    assert proxy.addon.metrics.grpc_status[14] == counted + 1  # chaosproxy_grpc_responses_total

    proxy.apply({"rules": [_status_rule("other.Service/*", "UNAVAILABLE")]})
    assert _say(ch) == b"echo:hi"
    assert _count(ch, 4) == [b"0", b"1", b"2", b"3"]
    (record,) = _records(proxy, COUNT, 1)[-1:]
    assert (record.rule, record.status, record.grpc_status) == (None, 200, 0)  # from trailers


def test_shipped_grpc_unavailable_scenario(
    proxy: ChaosProxy, channel: Callable[..., grpc.Channel]
) -> None:
    """Half the calls fail with UNAVAILABLE (seeded), the others pass a little later."""
    ch = channel()
    proxy.apply("grpc-unavailable", seed=20)
    codes = []
    for _ in range(20):
        try:
            _say(ch)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    records = _records(proxy, SAY, 20)
    failed = [r for r in records if r.rule == "unavailable"]
    assert len(failed) == codes.count(grpc.StatusCode.UNAVAILABLE)
    assert {r.grpc_status for r in failed} == {14}
    assert {r.rule for r in records if r not in failed} == {"slow"}


def test_grpc_status_after_a_delay(proxy: ChaosProxy, channel: Callable[..., grpc.Channel]) -> None:
    ch = channel()
    proxy.apply({"rules": [_status_rule("test.Echo/Say", "DEADLINE_EXCEEDED", delay="300ms")]})
    started = time.monotonic()
    err = _fails(lambda: _say(ch))
    elapsed = time.monotonic() - started
    assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.3 <= elapsed < 0.6


def _h2_call(port: int, path: str) -> list[Any]:
    """One gRPC call over a raw HTTP/2 connection (TLS, certificate not checked): the h2
    events of the answer until its stream ends."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "h2"
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            headers = [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", f"127.0.0.1:{port}"),
                (":path", path),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
            conn.send_headers(1, headers)
            conn.send_data(1, b"\x00\x00\x00\x00\x02hi", end_stream=True)
            sock.sendall(conn.data_to_send())
            events: list[Any] = []
            while not any(isinstance(e, h2.events.StreamEnded) for e in events):
                data = sock.recv(65536)
                assert data, f"connection closed; events so far: {events}"
                events += [e for e in conn.receive_data(data) if getattr(e, "stream_id", 0) == 1]
                sock.sendall(conn.data_to_send())
            return events


def test_trailers_only_answer_on_the_wire(proxy: ChaosProxy) -> None:
    """One HEADERS frame that ends the stream: status 200, the gRPC content-type and the
    status in the headers; no DATA frame, no trailers."""
    proxy.apply({"rules": [_status_rule("test.Echo/Say", "UNAVAILABLE", message="a b%")]})
    events = _h2_call(_port(proxy), SAY)
    received = events[0]
    assert isinstance(received, h2.events.ResponseReceived)
    assert received.stream_ended is not None  # END_STREAM on the HEADERS frame
    assert not [
        e for e in events if isinstance(e, h2.events.DataReceived | h2.events.TrailersReceived)
    ]
    headers = {k.decode(): v.decode() for k, v in received.headers}
    assert headers[":status"] == "200"
    assert headers["content-type"] == "application/grpc"
    assert headers["grpc-status"] == "14"
    assert headers["grpc-message"] == "a b%25"


RETRY_ON_UNAVAILABLE = {
    "methodConfig": [
        {
            "name": [{"service": "test.Echo"}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.1s",
                "backoffMultiplier": 1,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


def test_client_retry_policy_retries_as_configured(
    proxy: ChaosProxy, channel: Callable[..., grpc.Channel], echo: EchoServer
) -> None:
    ch = channel(RETRY_ON_UNAVAILABLE)
    # two UNAVAILABLE, then through: the third attempt succeeds
    proxy.apply({"rules": [{**_status_rule("test.Echo/Say", "UNAVAILABLE"), "times": 2}]})
    calls = echo.count(SAY)
    assert _say(ch) == b"echo:hi"
    records = _records(proxy, SAY, 3)
    assert [r.grpc_status for r in records] == [14, 14, 0]
    assert echo.count(SAY) == calls + 1
    # always UNAVAILABLE: maxAttempts attempts, then the client gives up with it
    proxy.apply({"rules": [_status_rule("test.Echo/Say", "UNAVAILABLE")]})
    proxy.reset()
    assert _fails(lambda: _say(ch)).code() is grpc.StatusCode.UNAVAILABLE
    assert len(_records(proxy, SAY, 4)) == 4
    # a status the policy does not name: one attempt only
    proxy.apply({"rules": [_status_rule("test.Echo/*", "PERMISSION_DENIED")]})
    proxy.reset()
    assert _fails(lambda: _say(ch)).code() is grpc.StatusCode.PERMISSION_DENIED
    # every attempt is decided before its answer, and the call ends with its last answer
    assert proxy.stats["injected"] == 1
    assert [r.grpc_status for r in _records(proxy, SAY, 1)] == [7]


def test_latency_delays_grpc_calls(proxy: ChaosProxy, channel: Callable[..., grpc.Channel]) -> None:
    ch = channel()
    proxy.apply(
        {
            "rules": [
                {"match": {"grpc": "test.Echo/*"}, "fault": {"type": "latency", "delay": "300ms"}}
            ]
        }
    )
    for call, expected in ((_say, b"echo:hi"), (_count, [b"0", b"1", b"2"])):
        started = time.monotonic()
        assert call(ch) == expected
        assert 0.3 <= time.monotonic() - started < 0.6


@pytest.mark.parametrize("how", ["reset", "close"])
@pytest.mark.parametrize("on", ["request", "response"])
def test_abort_resets_the_calls_stream(
    proxy: ChaosProxy, channel: Callable[..., grpc.Channel], how: str, on: str
) -> None:
    """On HTTP/2 an abort resets the call's stream (RST_STREAM INTERNAL_ERROR): the client
    sees INTERNAL; the channel's connection stays up for the next call."""
    fault = {"type": "abort", "how": how, "on": on}
    ch = channel()
    proxy.apply({"rules": [{"match": {"grpc": "test.Echo/Say"}, "fault": fault}]})
    err = _fails(lambda: _say(ch))
    assert err.code() is grpc.StatusCode.INTERNAL
    assert "RST_STREAM" in err.details()
    assert _count(ch) == [b"0", b"1", b"2"]
    (record,) = _records(proxy, SAY, 1)
    assert record.outcome in ("reset" if how == "reset" else "closed",)


def test_timeout_hold_ends_at_the_calls_deadline(
    proxy: ChaosProxy, channel: Callable[..., grpc.Channel], echo: EchoServer
) -> None:
    """A held gRPC call: the client's deadline passes (DEADLINE_EXCEEDED) and it resets
    the stream, keeping its connection; the proxy lets the flow go soon after the deadline
    the client sent (grpc-timeout), without calling the upstream."""
    ch = channel()
    proxy.apply({"rules": [{"match": {"grpc": "test.Echo/Say"}, "fault": {"type": "timeout"}}]})
    calls = echo.count(SAY)
    started = time.monotonic()
    assert _fails(lambda: _say(ch, timeout=0.5)).code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.5 <= time.monotonic() - started < 1.0
    (record,) = _records(proxy, SAY, 1)
    assert record.outcome == "client_disconnected"
    assert record.duration < 2.0
    assert proxy.addon.held == 0
    assert echo.count(SAY) == calls
    assert _count(ch) == [b"0", b"1", b"2"]  # the same connection serves on


def test_latency_past_the_deadline_ends_with_it(
    proxy: ChaosProxy, channel: Callable[..., grpc.Channel], echo: EchoServer
) -> None:
    """A 5 s delay on a call with a 0.5 s deadline: the proxy gives the call up shortly
    after the deadline instead of sending it upstream 5 s later."""
    ch = channel()
    fault = {"type": "latency", "delay": "5s"}
    proxy.apply({"rules": [{"match": {"grpc": "test.Echo/Say"}, "fault": fault}]})
    calls = echo.count(SAY)
    assert _fails(lambda: _say(ch, timeout=0.5)).code() is grpc.StatusCode.DEADLINE_EXCEEDED
    (record,) = _records(proxy, SAY, 1)
    assert record.outcome == "client_disconnected"
    assert 0.5 <= record.added_latency < 2.0
    assert echo.count(SAY) == calls


def test_timeout_then_status_reaches_grpc_client(
    proxy: ChaosProxy, channel: Callable[..., grpc.Channel]
) -> None:
    """HTTP 504 after the wait: gRPC clients map it to UNAVAILABLE."""
    ch = channel()
    fault = {"type": "timeout", "after": "200ms", "then": 504}
    proxy.apply({"rules": [{"match": {"grpc": "test.Echo/Say"}, "fault": fault}]})
    started = time.monotonic()
    err = _fails(lambda: _say(ch))
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert "504" in err.details()
    assert 0.2 <= time.monotonic() - started < 0.5


def test_forward_mode_through_grpc_http_proxy(echo: EchoServer, tmp_path: Path) -> None:
    """grpc's own proxy support (``grpc.http_proxy``, as the http_proxy variable): CONNECT,
    then TLS with the proxy's CA."""
    scenario = {"rules": [_status_rule("test.Echo/Say", "UNAVAILABLE", message="via CONNECT")]}
    confdir = tmp_path / "mitm"
    with ChaosProxy(forward=True, scenario=scenario, insecure=True, confdir=str(confdir)) as proxy:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(confdir / "mitmproxy-ca-cert.pem").read_bytes()
        )
        options = [("grpc.http_proxy", proxy.url), ("grpc.enable_http_proxy", 1)]
        with grpc.secure_channel(f"127.0.0.1:{echo.port}", credentials, options=options) as ch:
            err = _fails(lambda: _say(ch))
            assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "via CONNECT")
            assert _count(ch) == [b"0", b"1", b"2"]
        assert len(_records(proxy, SAY, 1)) == 1


def test_status_names_are_grpcs() -> None:
    """The names a scenario accepts are grpcio's StatusCode names, with the same numbers."""
    assert {c.name: c.value[0] for c in grpc.StatusCode} == STATUS_CODES
