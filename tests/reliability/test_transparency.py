"""With rules that do not match, 2,000 random requests go through untouched.

Methods, binary bodies from 0 B to 8 MB, chunked and fixed-length uploads and downloads,
repeated and odd-cased headers, long and percent-encoded paths and queries, keep-alive
reuse; raw HTTP/1.1 and requests in reverse mode, requests in forward mode, httpx over
TLS (HTTP/1.1 and HTTP/2) in forward mode through mitmproxy's CA. Both sides compare
hashes: the upstream records what it got, the client what came back.
"""

from __future__ import annotations

import hashlib
import random
import ssl
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import requests

from chaosproxy.testing.api import ChaosProxy
from tests.reliability.mirror import Mirror
from tests.reliability.transparency import (
    Answer,
    Case,
    RawClient,
    _chunks,
    check,
    generate,
    run_all,
)
from tests.support import self_signed

#: Rules that never match anything this suite sends: the proxy decides for every request.
QUIET = {
    "seed": 11,
    "rules": [
        {"name": "never-path", "match": {"path": "/never/*"}, "fault": {"type": "error"}},
        {
            "name": "never-header",
            "match": {"headers": {"X-Chaos": "on"}},
            "fault": {"type": "abort"},
        },
        {
            "name": "never-body",
            "match": {"method": "PROPFIND", "body": "*x*"},
            "fault": {"type": "timeout"},
        },
    ],
}


@dataclass
class World:
    plain: Mirror
    tls: Mirror
    reverse: ChaosProxy
    forward: ChaosProxy
    ca: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("transparency")
    with Mirror() as plain, Mirror(tls=self_signed(tmp)) as tls:
        reverse = ChaosProxy(upstream=plain.url, scenario=QUIET).start()
        forward = ChaosProxy(
            forward=True, scenario=QUIET, confdir=str(tmp / "mitm"), insecure=True
        ).start()
        try:
            yield World(plain, tls, reverse, forward, tmp / "mitm" / "mitmproxy-ca-cert.pem")
        finally:
            reverse.stop()
            forward.stop()
    assert not plain.errors and not tls.errors, plain.errors + tls.errors


def assert_all_intact(
    cases: list[Case],
    answers: dict[str, Answer | BaseException],
    mirror: Mirror,
    *,
    exact_headers: bool,
    host: str | None = None,
) -> None:
    problems = [
        p
        for case in cases
        for p in check(
            case,
            mirror.received.get(case.id),
            answers[case.id],
            exact_headers=exact_headers,
            host=host,
        )
    ]
    assert not problems, f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:8])


def in_threads(slices: list[list[Case]], sender: Callable[[], Callable[[Case], Answer]]) -> dict:
    answers: dict[str, Answer | BaseException] = {}
    with ThreadPoolExecutor(len(slices)) as pool:
        for result in pool.map(lambda cs: run_all(cs, sender()), slices):
            answers.update(result)
    return answers


def test_raw_http1_reverse_mode_1200_requests(world: World) -> None:
    cases = generate(1200, seed=8101, raw=True, prefix="raw")
    clients: list[RawClient] = []

    def sender() -> Callable[[Case], Answer]:
        clients.append(RawClient(world.reverse.port))
        return clients[-1].send

    answers = in_threads([cases[i::4] for i in range(4)], sender)
    for client in clients:
        client.close()
    assert_all_intact(cases, answers, world.plain, exact_headers=True)
    # keep-alive: a new connection only after the client asked to close one
    closes = sum(case.close for case in cases)
    assert sum(c.connections for c in clients) <= closes + len(clients)
    assert sum(len(c.body) for c in cases) > 8 * 1024 * 1024  # the large ones were sent
    assert world.reverse.addon.in_flight == 0


def requests_sender(base: str, proxy: str | None) -> Callable[[], Callable[[Case], Answer]]:
    def make() -> Callable[[Case], Answer]:
        session = requests.Session()
        session.trust_env = False
        if proxy:
            session.proxies = {"http": proxy}

        def send(case: Case) -> Answer:
            data = (
                _chunks(case.body, random.Random(case.seed))
                if case.chunked_upload
                else case.body or None
            )
            headers = dict(case.wire_headers())
            if case.close:
                headers["Connection"] = "close"
            with session.request(
                case.method,
                base + case.target,
                headers=headers,
                data=data,
                allow_redirects=False,
                stream=True,
                timeout=60,
            ) as r:
                body = r.raw.read(decode_content=False) if case.method != "HEAD" else b""
                pairs = list(r.raw.headers.items())
            return Answer(r.status_code, pairs, hashlib.sha256(body).hexdigest())

        return send

    return make


def test_requests_reverse_and_forward_mode_400_requests(world: World) -> None:
    reverse = generate(200, seed=8102, repeats=False, huge_every=200, prefix="rqr")
    forward = generate(200, seed=8103, repeats=False, huge_every=200, prefix="rqf")
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(in_threads, [reverse], requests_sender(world.reverse.url, None))
        b = pool.submit(in_threads, [forward], requests_sender(world.plain.url, world.forward.url))
        answers_reverse, answers_forward = a.result(), b.result()
    assert_all_intact(reverse, answers_reverse, world.plain, exact_headers=False)
    host = f"127.0.0.1:{world.plain.port}"  # forward mode keeps the client's Host
    assert_all_intact(forward, answers_forward, world.plain, exact_headers=False, host=host)


class H2First(ssl.SSLContext):
    """httpcore offers ALPN http/1.1 before h2 and mitmproxy picks in the client's order;
    a browser offers h2 first, and so does this context."""

    def set_alpn_protocols(self, protocols: Iterable[str]) -> None:
        super().set_alpn_protocols(sorted(protocols, key=lambda p: p != "h2"))


def httpx_sender(world: World, http2: bool, versions: list[str]) -> Callable[[], Callable]:
    def make() -> Callable[[Case], Answer]:
        context = H2First(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=str(world.ca))
        client = httpx.Client(
            proxy=world.forward.url,
            verify=context,
            http1=True,
            http2=http2,  # negotiated with ALPN inside the CONNECT tunnel
            trust_env=False,
            timeout=60,
        )

        def send(case: Case) -> Answer:
            content = (
                _chunks(case.body, random.Random(case.seed)) if case.chunked_upload else case.body
            )
            headers = case.wire_headers()
            if case.close and not http2:
                headers.append(("Connection", "close"))
            with client.stream(
                case.method, world.tls.url + case.target, headers=headers, content=content
            ) as r:
                body = b"".join(r.iter_raw())
                versions.append(r.http_version)
                return Answer(
                    r.status_code, r.headers.multi_items(), hashlib.sha256(body).hexdigest()
                )

        return send

    return make


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_httpx_over_tls_in_forward_mode_200_requests(world: World, http2: bool) -> None:
    cases = generate(200, seed=8104 + http2, huge_every=200, prefix=f"tls{int(http2)}-")
    versions: list[str] = []
    answers = in_threads([cases], httpx_sender(world, http2, versions))
    assert set(versions) == {"HTTP/2" if http2 else "HTTP/1.1"}
    host = f"127.0.0.1:{world.tls.port}"
    assert_all_intact(cases, answers, world.tls, exact_headers=False, host=host)
