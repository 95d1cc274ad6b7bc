"""``throttle`` as real clients see it: headers at once, then the body at the asked rate,
arrival times measured on a raw socket; other flows never wait."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.integration.test_mitmdump_script import start_mitmdump
from tests.integration.test_modes import https_behind_forward_proxy
from tests.support import body_bytes, curl, free_port, wait_until


def throttled(make_proxy, path: str = "*", **fault):
    return make_proxy(
        {
            "seed": 1,
            "rules": [
                {
                    "name": "slow-body",
                    "match": {"path": path},
                    "fault": {"type": "throttle", **fault},
                }
            ],
        }
    )


def timed_get(port: int, path: str) -> tuple[float, float, list[tuple[float, int]], bytes]:
    """GET on a fresh connection: (seconds to the end of the head, seconds to the whole
    answer, [(seconds, body bytes so far)] per read, the body), timed from the send."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        started = time.monotonic()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = bytearray()
        head_at = None
        length = None
        reads: list[tuple[float, int]] = []
        while True:
            chunk = s.recv(65536)
            now = time.monotonic() - started
            if not chunk:
                break
            data += chunk
            if head_at is None and b"\r\n\r\n" in data:
                head_at = now
                head = bytes(data).split(b"\r\n\r\n", 1)[0].decode().lower()
                length = int(head.split("content-length: ", 1)[1].split("\r\n", 1)[0])
            if head_at is not None:
                body = bytes(data).split(b"\r\n\r\n", 1)[1]
                reads.append((now, len(body)))
                if length is not None and len(body) >= length:
                    break
        assert head_at is not None
        return head_at, reads[-1][0], reads, body


def test_18_8_kb_at_10_kb_s_arrives_whole_in_about_two_seconds(make_proxy) -> None:
    proxy = throttled(make_proxy, rate="10KB/s")
    head_at, total, reads, body = timed_get(proxy.port, "/bytes/18800")
    assert body == body_bytes(18800)
    assert head_at < 0.5  # the headers do not wait for the body
    assert 1.8 <= total < 3.0, total
    # However late the client reads, by any moment no more than the rate allows has
    # arrived, plus at most 100 ms worth (no burst).
    for at, received in reads:
        assert received <= 10_000 * at + 1000, (at, received)
    assert len(reads) >= 10  # it trickled rather than arrived in a few lumps


def test_chunk_every_interval(make_proxy) -> None:
    proxy = throttled(make_proxy, chunk="1KB", interval="250ms")
    _, total, reads, body = timed_get(proxy.port, "/bytes/3000")
    assert body == body_bytes(3000)
    assert 0.75 <= total < 1.5, total
    for at, received in reads:
        assert received <= 4000 * at + 1000


def test_first_byte_waits_after_the_headers(make_proxy) -> None:
    proxy = throttled(make_proxy, rate="1MB/s", first_byte="600ms")
    head_at, total, reads, body = timed_get(proxy.port, "/bytes/1000")
    assert body == body_bytes(1000)
    assert head_at < 0.4
    assert 0.6 <= total < 1.2
    assert all(received == 0 or at >= 0.6 for at, received in reads)


def test_large_bodies_chunked_and_compressed_arrive_intact(make_proxy) -> None:
    proxy = throttled(make_proxy, rate="4MB/s")
    session = requests.Session()
    started = time.monotonic()
    big = session.get(f"{proxy.url}/bytes/2000000")
    assert big.content == body_bytes(2_000_000) and big.headers["content-length"] == "2000000"
    assert time.monotonic() - started >= 0.45
    chunked = session.get(f"{proxy.url}/chunked/50000")
    assert chunked.content == body_bytes(50000)
    assert chunked.headers["transfer-encoding"] == "chunked"
    assert session.get(f"{proxy.url}/gzip-json").json() == {"city": "berlin", "temp": 21.5}
    assert session.head(f"{proxy.url}/bytes/100").headers["content-length"] == "100"
    payload = body_bytes(300_000, seed=2)
    echo = session.post(f"{proxy.url}/echo", data=payload).json()
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert session.get(f"{proxy.url}/status/503").status_code == 503


def test_throttled_flows_never_block_each_other_or_untouched_ones(make_proxy) -> None:
    proxy = throttled(make_proxy, path="/bytes/*", rate="10KB/s")

    async def download() -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started = time.monotonic()
        writer.write(b"GET /bytes/10000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return time.monotonic() - started, answer.split(b"\r\n\r\n", 1)[1]

    async def quick() -> float:
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.to_thread(requests.get, f"{proxy.url}/json")
        return time.monotonic() - started

    async def all_of_them() -> tuple[list[tuple[float, bytes]], float]:
        downloads = asyncio.gather(*(download() for _ in range(8)))
        return await downloads, await quick()

    downloads, untouched = asyncio.run(all_of_them())
    assert all(body == body_bytes(10000) for _, body in downloads)
    assert all(0.9 <= seconds < 2.5 for seconds, _ in downloads), downloads
    assert untouched < 0.5


def test_keep_alive_requests_each_get_their_own_pace(make_proxy) -> None:
    proxy = throttled(make_proxy, rate="20KB/s")
    session = requests.Session()
    for n in (2000, 4000, 6000):
        started = time.monotonic()
        assert session.get(f"{proxy.url}/bytes/{n}").content == body_bytes(n)
        assert time.monotonic() - started >= n / 20000 * 0.9
    assert wait_until(lambda: proxy.addon.in_flight == 0, timeout=5)


def test_a_client_that_leaves_ends_the_relayed_exchange(make_proxy) -> None:
    proxy = throttled(make_proxy, rate="1KB/s")
    exit_code, _, seconds = curl(f"{proxy.url}/bytes/100000", "--max-time", "1")
    assert exit_code == 28
    wait_until(lambda: proxy.addon.relay.active == 0 and proxy.addon.in_flight == 0, timeout=5)
    [record] = [r for r in proxy.decisions if r.rule == "slow-body"]
    assert record.outcome == "client_disconnected"


def test_annotated_and_logged_with_the_pacing_as_added_latency(make_proxy) -> None:
    proxy = make_proxy(
        {
            "annotate": True,
            "rules": [{"name": "slow-body", "fault": {"type": "throttle", "rate": "10KB/s"}}],
        }
    )
    r = requests.get(f"{proxy.url}/bytes/10000")
    assert r.status_code == 200 and r.headers["X-Chaos-Rule"] == "slow-body"
    wait_until(lambda: any(r.rule == "slow-body" for r in proxy.decisions))
    [record] = [r for r in proxy.decisions if r.rule == "slow-body"]
    assert record.outcome == "response" and record.status == 200
    assert 0.8 <= record.added_latency < 2.0
    assert record.url.endswith("/bytes/10000") and "127.0.0.1" in record.url


def test_an_unreachable_upstream_is_a_502(make_proxy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    proxy = make_proxy(
        {"rules": [{"fault": {"type": "throttle", "rate": "10KB/s"}}]},
        upstream=f"http://127.0.0.1:{dead}",
    )
    r = requests.get(f"{proxy.url}/x")
    assert r.status_code == 502 and f"127.0.0.1:{dead}" in r.text
    # recorded as an unreachable upstream is without the relay: no upstream answered
    record = wait_until(lambda: proxy.decisions[-1:] and proxy.decisions[-1])
    assert (record.outcome, record.status, record.upstream_status) == ("error", 502, None)
    assert record.error is not None and f"cannot reach 127.0.0.1:{dead}" in record.error


def test_forward_https_and_http2_are_throttled_too(make_proxy, tmp_path: Path) -> None:
    scenario = {"rules": [{"fault": {"type": "throttle", "rate": "10KB/s"}}]}
    with https_behind_forward_proxy(make_proxy, tmp_path, scenario) as (https_url, proxy, ca):
        session = requests.Session()
        session.trust_env = False
        session.proxies = {"https": proxy.url}
        session.verify = ca
        started = time.monotonic()
        assert session.get(f"{https_url}/bytes/5000").content == body_bytes(5000)
        assert time.monotonic() - started >= 0.45
        exit_code, status, seconds = curl(
            f"{https_url}/bytes/5000", "--http2", "--proxy", proxy.url, "--cacert", ca
        )
        assert (exit_code, status) == (0, "200") and seconds >= 0.45


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"type": "throttle"}, "give rate (e.g. 10KB/s), or chunk"),
        ({"type": "throttle", "rate": "fast"}, "'fast' is not a rate"),
        ({"type": "throttle", "rate": 0}, "rate must be above 0"),
        ({"type": "throttle", "rate": "1KB/s", "chunk": 10}, "not both"),
        ({"type": "throttle", "chunk": "1KB"}, "give rate (e.g. 10KB/s), or chunk"),
        ({"type": "throttle", "rate": "1KB/s", "first_byte": "20m"}, "first_byte of 20m"),
    ],
)
def test_loader_refuses_bad_throttles(fault: dict, message: str) -> None:
    from chaosproxy.core.scenario import ScenarioError, load_data

    with pytest.raises(ScenarioError) as err:
        load_data({"rules": [{"fault": fault}]}, "s.yaml")
    assert message in str(err.value)


def test_a_large_body_is_read_from_the_upstream_only_as_fast_as_it_is_sent_on(
    make_proxy,
) -> None:
    """The upstream offers 50 MB; throttled to 100 KB/s, it can only get rid of what the
    socket buffers hold: the relay does not read the whole body into memory."""
    total = 50_000_000
    sent = [0]
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            block = b"x" * 65536
            try:
                while sent[0] < total:
                    conn.sendall(block)
                    sent[0] += len(block)
            except OSError:
                pass  # the relay closed: the client left

    import threading

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    proxy = make_proxy(
        {"rules": [{"fault": {"type": "throttle", "rate": "100KB/s"}}]},
        upstream=f"http://127.0.0.1:{listener.getsockname()[1]}",
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            received += len(client.recv(65536))
    assert 50_000 < received < 400_000
    assert sent[0] < 20_000_000, sent[0]  # socket buffers at most, never the whole body
    thread.join(timeout=10)
    assert not thread.is_alive()
    listener.close()


def test_throttle_inside_plain_mitmdump(upstream, tmp_path: Path) -> None:
    port = free_port()
    proc = start_mitmdump(upstream.url, port, tmp_path, "chaos_scenario=throttled")
    try:
        wait_until(lambda: curl(f"http://127.0.0.1:{port}/json")[1] == "200", timeout=30)
        exit_code, status, seconds = curl(f"http://127.0.0.1:{port}/bytes/10000")
        assert (exit_code, status) == (0, "200")
        assert 1.2 <= seconds < 2.5  # 300 ms first byte + 10 KB at 10 KB/s
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "injected slow-link [throttle 10KB/s, first byte after 300ms]" in out


def test_reverse_https_upstream_verified_as_mitmproxy_would(make_proxy, tmp_path: Path) -> None:
    from tests.integration.test_modes import tls_upstream

    scenario = {"rules": [{"fault": {"type": "throttle", "rate": "20KB/s"}}]}
    with tls_upstream(tmp_path) as https_url:
        trusting = make_proxy(scenario, upstream=https_url, insecure=True)
        r = requests.get(f"{trusting.url}/bytes/5000")
        assert r.status_code == 200 and r.content == body_bytes(5000)
        strict = make_proxy(scenario, upstream=https_url)  # a self-signed certificate
        refused = requests.get(f"{strict.url}/bytes/5000")
        assert refused.status_code == 502 and "CERTIFICATE_VERIFY_FAILED" in refused.text
