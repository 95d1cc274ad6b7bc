"""Stream faults on the wire: an upstream that streams SSE (and NDJSON) slowly, read with
``httpx-sse`` and with a raw socket (to see the last chunk, the reset, the half chunk)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import httpx_sse
import pytest

from chaosproxy.testing.api import ChaosProxy
from tests.integration.sse_upstream import SSEUpstream, ndjson_pieces, sse_pieces, sse_upstream
from tests.support import wait_until


@pytest.fixture(scope="module")
def sse() -> Iterator[SSEUpstream]:
    with sse_upstream() as server:
        yield server


def rule(fault: dict) -> dict:
    return {"seed": 1, "rules": [{"name": "stream", "fault": fault}]}


@dataclass
class Raw:
    """An answer as read from the socket: its head, the body's chunks as framed, how the
    connection ended, and a chunk that was announced but not filled."""

    head: str = ""
    chunks: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds from the send, per chunk
    head_at: float = 0.0
    end: str = ""  # "last-chunk", "eof" or "reset"
    partial: tuple[int, bytes] | None = None  # (announced size, bytes that came)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def raw_get(port: int, path: str, timeout: float = 10, tls: ssl.SSLContext | None = None) -> Raw:
    """GET ``path`` over HTTP/1.1 (over TLS with ``tls``) and parse the chunked answer as
    it arrives."""
    out = Raw()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        # a reset reads as an EOF through Python's ssl (a "ragged EOF"): see it raw below
        sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock as s:
        started = time.monotonic()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                out.end = "reset"
                break
            now = time.monotonic() - started
            if not data:
                out.end = "eof"
                break
            buf += data
            if not out.head:
                if b"\r\n\r\n" not in buf:
                    continue
                head, buf = buf.split(b"\r\n\r\n", 1)
                out.head, out.head_at = head.decode().lower(), now
                assert "transfer-encoding: chunked" in out.head, out.head
            while b"\r\n" in buf:
                size_line, rest = buf.split(b"\r\n", 1)
                size = int(size_line, 16)
                if len(rest) < size + 2:
                    break
                if size == 0:
                    out.end = "last-chunk"
                    return out
                out.chunks.append(rest[:size])
                out.times.append(now)
                buf = rest[size + 2 :]
        if buf and out.head:
            size_line, _, rest = buf.partition(b"\r\n")
            out.partial = (int(size_line, 16), rest)
    return out


def sse_events(
    url: str, tls: ssl.SSLContext | None = None
) -> tuple[list[str], BaseException | None]:
    """The data of each event httpx-sse reads, and the error that ended the stream (if any)."""
    got: list[str] = []
    try:
        with (
            httpx.Client(timeout=10, verify=tls or True) as client,
            httpx_sse.connect_sse(client, "GET", url) as source,
        ):
            for event in source.iter_sse():
                got.append(event.data)
    except httpx.HTTPError as exc:
        return got, exc
    return got, None


def decision(proxy, n: int = 1):
    wait_until(lambda: len(proxy.decisions) >= n)
    return proxy.decisions[n - 1]


DATA = [f'{{"i": {i}}}' for i in range(6)]


def test_cut_clean_ends_the_stream_properly_after_n_events(make_proxy, sse) -> None:
    proxy = make_proxy(rule({"type": "stream_cut", "events": 3, "mode": "clean"}), upstream=sse.url)
    assert sse_events(f"{proxy.url}/sse?events=6") == (DATA[:3], None)
    # events are counted in the body as sent: the upstream is asked for no compression
    assert sse.requests[-1]["accept-encoding"] == "identity"
    raw = raw_get(proxy.port, "/sse?events=6")
    assert raw.chunks == sse_pieces(3) and raw.end == "last-chunk"
    record = decision(proxy)
    assert (record.outcome, record.status, record.faults) == ("response", 200, ("stream_cut",))
    assert record.stream == {
        "events": 3,
        "bytes": len(b"".join(sse_pieces(3))),
        "reached": True,
        "end": "clean",
    }


def test_cut_reset_sends_an_rst_right_after_the_nth_event(make_proxy, sse) -> None:
    proxy = make_proxy(rule({"type": "stream_cut", "events": 2, "mode": "reset"}), upstream=sse.url)
    raw = raw_get(proxy.port, "/sse?events=6")
    assert raw.chunks == sse_pieces(2) and raw.end == "reset" and raw.partial is None
    got, error = sse_events(f"{proxy.url}/sse?events=6")
    assert got == DATA[:2] and isinstance(error, httpx.ReadError)
    assert "reset" in str(error).lower()
    record = decision(proxy)
    assert record.outcome == "reset" and record.stream is not None
    assert record.stream["end"] == "reset" and record.stream["events"] == 2
    # the metrics count the fault by its type, and the outcome the clients saw
    wait_until(lambda: len(proxy.decisions) == 2)
    metrics = proxy.addon.metrics
    assert metrics.faults[("stream", "stream_cut")] == 2 and metrics.outcomes["reset"] == 2


def test_cut_truncated_announces_a_chunk_and_sends_half_of_it(make_proxy, sse) -> None:
    fault = {"type": "stream_cut", "events": 2, "mode": "truncated"}
    proxy = make_proxy(rule(fault), upstream=sse.url)
    raw = raw_get(proxy.port, "/sse?events=6")
    nxt = sse_pieces(3)[2]
    assert raw.chunks == sse_pieces(2) and raw.end == "eof"
    assert raw.partial == (len(nxt), nxt[: len(nxt) // 2])
    got, error = sse_events(f"{proxy.url}/sse?events=6")
    assert got == DATA[:2] and isinstance(error, httpx.RemoteProtocolError)
    assert "incomplete chunked read" in str(error)
    record = decision(proxy)
    assert (record.outcome, record.status) == ("truncated", 200)


def test_truncated_with_nothing_after_the_point_closes_without_the_last_chunk(
    make_proxy, sse
) -> None:
    fault = {"type": "stream_cut", "events": 3, "mode": "truncated"}
    proxy = make_proxy(rule(fault), upstream=sse.url)
    raw = raw_get(proxy.port, "/sse?events=3")  # nothing comes after the point
    assert raw.chunks == sse_pieces(3) and raw.end == "eof" and raw.partial is None
    assert decision(proxy).outcome == "truncated"


@pytest.mark.parametrize("eol", ["crlf", "cr"])
def test_events_are_parsed_whatever_the_line_ends_and_comments_do_not_count(
    make_proxy, sse, eol: str
) -> None:
    proxy = make_proxy(rule({"type": "stream_cut", "events": 2, "mode": "clean"}), upstream=sse.url)
    path = f"/sse?events=5&eol={eol}&comments=1"
    assert sse_events(proxy.url + path) == (DATA[:2], None)
    raw = raw_get(proxy.port, path)
    eol_bytes = {"crlf": b"\r\n", "cr": b"\r"}[eol]
    assert raw.body == b"".join(sse_pieces(2, eol_bytes, comments=True))


def test_bytes_count_and_a_content_length_answer_is_cut_cleanly_as_chunked(make_proxy, sse) -> None:
    proxy = make_proxy(rule({"type": "stream_cut", "bytes": 50, "mode": "clean"}), upstream=sse.url)
    raw = raw_get(proxy.port, "/sse?events=4&length=1")
    assert "content-length" not in raw.head and raw.end == "last-chunk"
    assert raw.body == b"".join(sse_pieces(4))[:50]
    assert decision(proxy).stream == {"events": 0, "bytes": 50, "reached": True, "end": "clean"}


def test_other_bodies_count_chunks(make_proxy, sse) -> None:
    proxy = make_proxy(rule({"type": "stream_cut", "events": 2, "mode": "clean"}), upstream=sse.url)
    raw = raw_get(proxy.port, "/ndjson?chunks=5")
    assert raw.chunks == ndjson_pieces(2) and raw.end == "last-chunk"


def test_a_stream_shorter_than_the_point_passes_whole(make_proxy, sse) -> None:
    proxy = make_proxy(rule({"type": "stream_cut", "events": 9}), upstream=sse.url)
    raw = raw_get(proxy.port, "/sse?events=3")
    assert raw.chunks == sse_pieces(3) and raw.end == "last-chunk"
    record = decision(proxy)
    assert record.outcome == "response"
    assert record.stream == {"events": 3, "bytes": len(raw.body), "reached": False, "end": None}


def test_stall_pauses_after_n_events_then_the_rest_follows(make_proxy, sse) -> None:
    fault = {"type": "stream_stall", "events": 2, "pause": "600ms"}
    proxy = make_proxy(rule(fault), upstream=sse.url)
    raw = raw_get(proxy.port, "/sse?events=5&interval=0.01")
    assert raw.body == b"".join(sse_pieces(5)) and raw.end == "last-chunk"
    at = {len(b"".join(raw.chunks[: i + 1])): t for i, t in enumerate(raw.times)}
    two = len(b"".join(sse_pieces(2)))
    gap = min(t for n, t in at.items() if n > two) - max(t for n, t in at.items() if n <= two)
    assert 0.6 <= gap < 1.2, gap
    record = decision(proxy)
    assert record.outcome == "response" and record.added_latency >= 0.6
    assert record.stream is not None and record.stream["end"] is None


def test_stall_then_cut_ends_the_stream_after_the_pause(make_proxy, sse) -> None:
    fault = {"type": "stream_stall", "bytes": 40, "pause": "300ms", "then": "cut", "mode": "clean"}
    proxy = make_proxy(rule(fault), upstream=sse.url)
    started = time.monotonic()
    raw = raw_get(proxy.port, "/sse?events=5&interval=0.01")
    assert raw.body == b"".join(sse_pieces(5))[:40] and raw.end == "last-chunk"
    assert time.monotonic() - started >= 0.3


def test_a_client_leaving_during_a_stall_ends_the_relayed_stream(make_proxy, sse) -> None:
    fault = {"type": "stream_stall", "events": 1, "pause": "20s"}
    proxy = make_proxy(rule(fault), upstream=sse.url)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"GET /sse?events=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while sse_pieces(1)[0] not in got:
            got += s.recv(65536)
        left = time.monotonic()
    record = decision(proxy)  # long before the 20 s pause would have ended
    assert record.outcome == "client_disconnected" and time.monotonic() - left < 5
    wait_until(lambda: proxy.addon.relay.active == 0)


def test_slow_start_sends_the_head_at_once_and_the_first_byte_late(make_proxy, sse) -> None:
    proxy = make_proxy(rule({"type": "stream_slow_start", "delay": "600ms"}), upstream=sse.url)
    raw = raw_get(proxy.port, "/sse?events=3&interval=0.01")
    assert raw.head_at < 0.4, raw.head_at
    assert 0.6 <= raw.times[0] < 1.5, raw.times[0]
    assert raw.chunks == sse_pieces(3) and raw.end == "last-chunk"
    # a client whose read timeout is shorter gives up
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=0.2)) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        with httpx_sse.connect_sse(client, "GET", f"{proxy.url}/sse?events=3") as source:
            list(source.iter_sse())


@pytest.fixture(scope="module")
def h2_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChaosProxy, str]]:
    """A reverse proxy (TLS to its clients, so they may speak HTTP/2) to an HTTPS SSE
    upstream, with one rule per mode on its path; and the CA its clients trust."""
    tmp = tmp_path_factory.mktemp("h2-streams")
    rules = [
        {
            "name": mode,
            "match": {"query": {"mode": mode}},
            "fault": {"type": "stream_cut", "events": 2, "mode": mode},
        }
        for mode in ("clean", "reset", "truncated")
    ]
    with (
        sse_upstream(tmp) as up,
        ChaosProxy(up.url, scenario={"rules": rules}, confdir=str(tmp), insecure=True) as proxy,
    ):
        yield proxy, str(tmp / "mitmproxy-ca-cert.pem")


def test_over_tls_http1_the_cut_is_framed_exactly_as_in_plain_http(h2_proxy) -> None:
    proxy, ca = h2_proxy
    tls = ssl.create_default_context(cafile=ca)
    clean = raw_get(proxy.port, "/sse?events=5&mode=clean", tls=tls)
    assert clean.chunks == sse_pieces(2) and clean.end == "last-chunk"
    truncated = raw_get(proxy.port, "/sse?events=5&mode=truncated", tls=tls)
    nxt = sse_pieces(3)[2]
    assert truncated.chunks == sse_pieces(2) and truncated.end == "eof"
    assert truncated.partial == (len(nxt), nxt[: len(nxt) // 2])
    got, error = sse_events(f"https://127.0.0.1:{proxy.port}/sse?events=5&mode=truncated", tls)
    assert got == DATA[:2] and "incomplete chunked read" in str(error)
    wait_until(lambda: proxy.decisions[-1].outcome == "truncated")


@pytest.mark.parametrize(
    ("mode", "outcome"), [("clean", "response"), ("reset", "reset"), ("truncated", "reset")]
)
def test_over_http2_a_cut_ends_the_stream_cleanly_or_resets_only_that_stream(
    h2_proxy, mode: str, outcome: str
) -> None:
    proxy, ca = h2_proxy
    before = len(proxy.decisions)
    got: list[str] = []
    with httpx.Client(http2=True, http1=False, verify=ssl.create_default_context(cafile=ca)) as c:
        url = f"https://127.0.0.1:{proxy.port}/sse?events=5&mode={mode}"
        error: BaseException | None = None
        try:
            with httpx_sse.connect_sse(c, "GET", url) as source:
                assert source.response.http_version == "HTTP/2"
                got.extend(event.data for event in source.iter_sse())
        except httpx.RemoteProtocolError as exc:  # h2's StreamReset
            error = exc
        assert got == DATA[:2]
        assert (error is None) == (mode == "clean"), error
        # the connection survives a reset stream: the next request on it is answered
        assert c.get(f"https://127.0.0.1:{proxy.port}/ndjson?chunks=1").status_code == 200
    record = decision(proxy, before + 1)
    assert record.outcome == outcome and record.stream is not None
    assert record.stream["end"] == mode
