"""rate_limit, body matching and phases through a real proxy with real clients."""

from __future__ import annotations

import time

import requests

from tests.support import UpstreamServer, wait_until


def test_rate_limit_2_per_10s_answers_200_200_429_with_retry_after(make_proxy) -> None:
    proxy = make_proxy(
        {"rules": [{"name": "quota", "fault": {"type": "rate_limit", "limit": 2, "per": "10s"}}]}
    )
    session = requests.Session()
    answers = [session.get(f"{proxy.url}/echo") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 429, 429]
    assert 9 <= int(answers[2].headers["Retry-After"]) <= 10
    assert answers[2].json()["rule"] == "quota" and answers[2].json()["retry_after"] >= 9


def test_rate_limit_window_rolls_and_rejections_do_not_count(make_proxy) -> None:
    proxy = make_proxy({"rules": [{"fault": {"type": "rate_limit", "limit": 1, "per": "1s"}}]})
    s = requests.Session()
    started = time.monotonic()
    assert s.get(f"{proxy.url}/a").status_code == 200
    rejected = s.get(f"{proxy.url}/a")
    assert rejected.status_code == 429 and rejected.headers["Retry-After"] == "1"
    wait_until(lambda: time.monotonic() - started > 1.05, timeout=3)
    assert s.get(f"{proxy.url}/a").status_code == 200  # a new window
    assert s.get(f"{proxy.url}/a").status_code == 429


def test_rate_limit_per_api_key_and_later_rules_tried_under_the_limit(make_proxy) -> None:
    proxy = make_proxy(
        {
            "rules": [
                {
                    "name": "per-key",
                    "fault": {
                        "type": "rate_limit",
                        "limit": 1,
                        "per": "1m",
                        "key": "header:X-Api-Key",
                    },
                },
                {
                    "name": "later",
                    "match": {"path": "/later"},
                    "fault": {"type": "error", "status": 418},
                },
            ]
        }
    )
    s = requests.Session()
    assert s.get(f"{proxy.url}/x", headers={"X-Api-Key": "a"}).status_code == 200
    assert s.get(f"{proxy.url}/x", headers={"X-Api-Key": "a"}).status_code == 429
    assert s.get(f"{proxy.url}/later", headers={"X-Api-Key": "b"}).status_code == 418
    assert s.get(f"{proxy.url}/x", headers={"X-Api-Key": "b"}).status_code == 429
    r = s.get(f"{proxy.url}/x", headers={"X-Api-Key": "a"})
    assert r.status_code == 429 and 59 <= int(r.headers["Retry-After"]) <= 60


def test_match_json_and_body_on_the_wire(make_proxy, upstream: UpstreamServer) -> None:
    proxy = make_proxy(
        {
            "rules": [
                {
                    "name": "get-user",
                    "match": {
                        "method": "POST",
                        "path": "/graphql",
                        "json": {"operationName": "GetUser"},
                    },
                    "fault": {"type": "error", "status": 503},
                },
                {
                    "name": "big-order",
                    "match": {"body": "*quantity=1000*"},
                    "fault": {"type": "error", "status": 507},
                },
                {
                    "name": "nested",
                    "match": {"json": {"variables.ids.1": "7"}},
                    "fault": {"type": "error", "status": 409},
                },
            ]
        }
    )
    s = requests.Session()
    gql = f"{proxy.url}/graphql"
    assert s.post(gql, json={"operationName": "GetUser", "query": "{ user }"}).status_code == 503
    ok = s.post(gql, json={"operationName": "ListUsers", "query": "{ users }"})
    assert ok.status_code == 200 and ok.json()["path"] == "/graphql"
    assert s.post(gql, data=b"not json at all").status_code == 200
    assert s.get(gql).status_code == 200  # no body: the json rule does not match
    assert s.post(f"{proxy.url}/order", data="item=tea&quantity=1000").status_code == 507
    assert s.post(f"{proxy.url}/order", data="item=tea&quantity=1").status_code == 200
    assert s.post(f"{proxy.url}/x", json={"variables": {"ids": [3, 7]}}).status_code == 409
    # a body read for matching still reaches the upstream untouched
    assert upstream.received[-1][3] == b"item=tea&quantity=1"


def test_three_phases_sampled_mid_phase(make_proxy) -> None:
    proxy = make_proxy(
        {
            "phases": [
                {"name": "calm", "duration": "2s"},
                {
                    "name": "outage",
                    "duration": "2s",
                    "rules": [{"fault": {"type": "error", "status": 503}}],
                },
                {"name": "after", "duration": "2s"},
            ]
        }
    )
    ready = time.monotonic()  # the proxy is ready when make_proxy returns (a bit before)
    statuses = []
    for mid in (1.0, 3.0, 5.0):
        wait_until(lambda mid=mid: time.monotonic() - ready >= mid, timeout=10)
        statuses.append((proxy.engine.phase, requests.get(f"{proxy.url}/x").status_code))
    assert statuses == [("calm", 200), ("outage", 503), ("after", 200)]
    proxy.jump_to("outage")
    assert requests.get(f"{proxy.url}/x").status_code == 503
    assert proxy.stats["phase"] == "outage"
