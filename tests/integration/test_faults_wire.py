"""The core faults as a real client sees them through a real proxy."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import time

import pytest
import requests

from tests.support import UpstreamServer, body_bytes, curl, wait_until


def scenario(*rules: dict, **top) -> dict:
    return {"seed": 1, **top, "rules": list(rules)}


def test_error_503_with_retry_after(make_proxy) -> None:
    proxy = make_proxy(
        scenario(
            {
                "name": "down",
                "fault": {"type": "error", "status": 503, "headers": {"Retry-After": "2"}},
            }
        )
    )
    r = requests.get(f"{proxy.url}/v1/forecast/berlin")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert r.json() == {
        "error": "Service Unavailable",
        "status": 503,
        "rule": "down",
        "injected_by": "chaosproxy",
    }
    assert curl(f"{proxy.url}/x")[:2] == (0, "503")


def test_error_on_request_never_calls_the_upstream(make_proxy, upstream: UpstreamServer) -> None:
    proxy = make_proxy(scenario({"match": {"path": "/never"}, "fault": {"type": "error"}}))
    requests.get(f"{proxy.url}/never")
    assert not any(path == "/never" for _, path, _, _ in upstream.received)


def test_latency_300ms_never_less_not_much_more(make_proxy) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "latency", "delay": "300ms"}}))
    for _ in range(3):
        exit_code, status, seconds = curl(f"{proxy.url}/echo")
        assert (exit_code, status) == (0, "200")
        assert 0.3 <= seconds < 0.55


def test_abort_reset_is_a_tcp_reset(make_proxy) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "abort", "how": "reset"}}))
    assert curl(f"{proxy.url}/x")[0] == 56
    with pytest.raises(requests.ConnectionError) as err:
        requests.get(f"{proxy.url}/x")
    assert isinstance(err.value.args[0].args[1], ConnectionResetError)


def test_abort_close_is_an_empty_reply(make_proxy) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "abort", "how": "close"}}))
    assert curl(f"{proxy.url}/x")[0] == 52
    with pytest.raises(requests.ConnectionError) as err:
        requests.get(f"{proxy.url}/x")
    assert isinstance(err.value.args[0].args[1], http.client.RemoteDisconnected)


def test_abort_on_response_calls_the_upstream_first(make_proxy, upstream: UpstreamServer) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "abort", "how": "reset", "on": "response"}}))
    before = len(upstream.received)
    assert curl(f"{proxy.url}/after-upstream")[0] == 56
    assert any(p == "/after-upstream" for _, p, _, _ in upstream.received[before:])


def test_hang_until_the_client_gives_up_and_then_let_go(make_proxy) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "timeout"}}))
    exit_code, _, seconds = curl(f"{proxy.url}/x", "--max-time", "1")
    assert exit_code == 28 and 1.0 <= seconds < 1.5
    wait_until(lambda: proxy.addon.held == 0 and proxy.addon.in_flight == 0, timeout=5)


def test_timeout_after_then_504(make_proxy) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "timeout", "after": "500ms", "then": 504}}))
    exit_code, status, seconds = curl(f"{proxy.url}/x")
    assert (exit_code, status) == (0, "504")
    assert 0.5 <= seconds < 0.8


@pytest.mark.parametrize(("then", "exit_code"), [("close", 52), ("reset", 56)])
def test_timeout_after_then_close_or_reset(make_proxy, then: str, exit_code: int) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "timeout", "after": "200ms", "then": then}}))
    code, _, seconds = curl(f"{proxy.url}/x")
    assert code == exit_code and seconds >= 0.2


def test_error_on_response_replaces_the_upstream_answer(
    make_proxy, upstream: UpstreamServer
) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "error", "status": 502, "on": "response"}}))
    before = len(upstream.received)
    r = requests.get(f"{proxy.url}/replaced")
    assert r.status_code == 502 and r.json()["status"] == 502
    assert len(upstream.received) == before + 1


def test_a_list_of_faults_acts_in_order(make_proxy) -> None:
    proxy = make_proxy(
        scenario(
            {
                "fault": [
                    {"type": "latency", "delay": "200ms"},
                    {"type": "error", "status": 502, "on": "response"},
                ]
            }
        )
    )
    started = time.monotonic()
    r = requests.get(f"{proxy.url}/x")
    assert r.status_code == 502 and time.monotonic() - started >= 0.2


def test_latency_on_response_holds_the_answer(make_proxy) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "latency", "delay": "250ms", "on": "response"}}))
    started = time.monotonic()
    assert requests.get(f"{proxy.url}/echo").status_code == 200
    assert 0.25 <= time.monotonic() - started < 0.6


def test_method_header_and_every_match_exactly_as_written(make_proxy) -> None:
    proxy = make_proxy(
        scenario(
            {
                "name": "posts",
                "match": {"method": "POST", "path": "/v1/*"},
                "fault": {"type": "error", "status": 500},
            },
            {
                "name": "acme",
                "match": {"headers": {"x-tenant": "acme"}},
                "every": 2,
                "fault": {"type": "error", "status": 503},
            },
        )
    )
    s = requests.Session()
    assert s.get(f"{proxy.url}/v1/a").status_code == 200
    assert s.post(f"{proxy.url}/v1/a", data=b"x").status_code == 500
    assert s.post(f"{proxy.url}/v2/a", data=b"x").status_code == 200
    statuses = [s.get(f"{proxy.url}/x", headers={"X-Tenant": "acme"}).status_code for _ in range(4)]
    assert statuses == [200, 503, 200, 503]
    assert s.get(f"{proxy.url}/x", headers={"X-Tenant": "other"}).status_code == 200


def test_untouched_requests_are_byte_identical(make_proxy, upstream: UpstreamServer) -> None:
    proxy = make_proxy(
        scenario({"match": {"path": "/nothing-matches"}, "fault": {"type": "error"}})
    )
    s = requests.Session()
    payload = body_bytes(300_000, seed=9)
    r = s.post(f"{proxy.url}/echo?x=%2F%20y", data=payload, headers={"X-Odd-Case": "KeEp"})
    doc = r.json()
    assert doc["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert doc["path"] == "/echo?x=%2F%20y"
    assert doc["headers"]["X-Odd-Case"] == "KeEp"
    download = s.get(f"{proxy.url}/bytes/500000?seed=4")
    assert download.content == body_bytes(500_000, seed=4)
    assert download.headers["Content-Length"] == "500000"


def test_annotate_adds_the_rule_header(make_proxy) -> None:
    proxy = make_proxy(
        scenario({"name": "slowish", "fault": {"type": "latency", "delay": "1ms"}}, annotate=True)
    )
    assert requests.get(f"{proxy.url}/echo").headers["X-Chaos-Rule"] == "slowish"


def test_200_concurrent_delays_do_not_block_each_other(make_proxy) -> None:
    proxy = make_proxy(scenario({"fault": {"type": "latency", "delay": "300ms"}}))

    async def one() -> tuple[float, float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        start = time.monotonic()
        writer.write(b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        end = time.monotonic()
        writer.close()
        return start, end, answer.split(b"\r\n", 1)[0]

    async def burst() -> list[tuple[float, float, bytes]]:
        return await asyncio.gather(*(one() for _ in range(200)))

    results = asyncio.run(burst())
    assert {status for _, _, status in results} == {b"HTTP/1.1 200 OK"}
    assert all(end - start >= 0.3 for start, end, _ in results)
    ends = [end for _, end, _ in results]
    # Serialised, 200 x 300 ms would take a minute; concurrent, they finish close
    # together (about 0.3 s apart on an idle machine: the bench measures accuracy, this
    # bound only has to tell concurrency from serialisation on a loaded CI machine).
    assert max(ends) - min(ends) < 10.0, max(ends) - min(ends)
