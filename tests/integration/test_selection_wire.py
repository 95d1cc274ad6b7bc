"""per_request and sticky through a real proxy with a real client (requests)."""

from __future__ import annotations

import requests

from chaosproxy.core.decisions import parse_retry_after, request_key
from chaosproxy.core.engine import draw_for_key
from chaosproxy.proxy_addons.bodies import STREAM_FROM
from tests.support import UpstreamServer, wait_until

ERR = {"type": "error", "status": 503}


def test_per_request_fails_each_distinct_request_n_times_then_lets_it_through(
    make_proxy, upstream: UpstreamServer
) -> None:
    proxy = make_proxy({"seed": 1, "rules": [{"per_request": {"times": 2}, "fault": ERR}]})
    before = len(upstream.received)  # the upstream is shared with other tests
    statuses = {
        city: [requests.get(f"{proxy.url}/echo/{city}").status_code for _ in range(3)]
        for city in ("berlin", "paris")
    }
    assert statuses == {"berlin": [503, 503, 200], "paris": [503, 503, 200]}
    cities = ("/echo/berlin", "/echo/paris")
    reached = [path for _, path, _, _ in upstream.received[before:] if path in cities]
    assert reached == list(cities)  # only each third attempt went upstream


def test_per_request_identity_uses_the_body_or_the_idempotency_key(make_proxy) -> None:
    proxy = make_proxy({"seed": 1, "rules": [{"per_request": {"times": 1}, "fault": ERR}]})
    url = f"{proxy.url}/orders"
    # Same URL, different bodies: two distinct requests, each fails once.
    assert [requests.post(url, data=b).status_code for b in (b"a", b"b", b"a", b"b")] == [
        503,
        503,
        200,
        200,
    ]
    # An Idempotency-Key makes retries with a changed body the same request.
    keyed = [
        requests.post(url, data=body, headers={"Idempotency-Key": "order-9"}).status_code
        for body in (b"first", b"second")
    ]
    assert keyed == [503, 200]


def test_sticky_users_see_the_same_outcome_on_every_request(make_proxy) -> None:
    seed, share = 5, 0.3
    rule = {"name": "some-users", "sticky": "header:X-User-Id", "probability": share}
    proxy = make_proxy({"seed": seed, "rules": [{**rule, "fault": ERR}]})
    failing: dict[str, set[int]] = {}
    with requests.Session() as session:
        for _ in range(3):
            for i in range(30):
                user = f"user-{i}"
                r = session.get(f"{proxy.url}/echo", headers={"X-User-Id": user})
                failing.setdefault(user, set()).add(r.status_code)
    assert all(len(codes) == 1 for codes in failing.values()), failing
    expected = {
        f"user-{i}"
        for i in range(30)
        if draw_for_key(seed, None, "some-users", f"sticky\x1fuser-{i}") < share
    }
    assert {user for user, codes in failing.items() if codes == {503}} == expected
    assert 0 < len(expected) < 30


def test_decision_records_carry_the_same_identity_and_the_retry_after(
    make_proxy, upstream: UpstreamServer
) -> None:
    fault = {**ERR, "headers": {"Retry-After": "2"}}
    proxy = make_proxy({"seed": 1, "rules": [{"per_request": {"times": 1}, "fault": fault}]})
    assert [requests.get(f"{proxy.url}/echo/a").status_code for _ in range(2)] == [503, 200]
    first, second = wait_until(lambda: proxy.decisions if len(proxy.decisions) == 2 else None)
    # the engine's per_request identity is the decision log's request key
    assert first.request_key == second.request_key == request_key("GET", first.url, b"")
    assert first.url == f"{upstream.url}/echo/a"
    assert (first.rule, first.status, first.retry_after) == ("error-1", 503, 2.0)
    assert (second.rule, second.status, second.retry_after) == (None, 200, None)


def test_parse_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("3", 0) == 3.0
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412475.0) == 5.0


def test_per_request_identity_of_large_bodies(make_proxy) -> None:
    proxy = make_proxy({"seed": 1, "rules": [{"per_request": {"times": 1}, "fault": ERR}]})
    big_a, big_b = b"a" * (STREAM_FROM + 10), b"b" * (STREAM_FROM + 10)
    codes = [
        requests.post(f"{proxy.url}/upload", data=b).status_code for b in (big_a, big_b, big_a)
    ]
    assert codes == [503, 503, 200]
