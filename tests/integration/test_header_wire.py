"""``header`` through a real proxy: the answer's headers changed, its body intact."""

from __future__ import annotations

import json

import requests

from tests.support import wait_until


def test_header_sets_and_removes_response_headers_and_keeps_the_body(make_proxy) -> None:
    proxy = make_proxy(
        {
            "rules": [
                {
                    "name": "no-type",
                    "match": {"path": "/json"},
                    "fault": {
                        "type": "header",
                        "set": {"Cache-Control": "no-store", "X-Debug": 1},
                        "remove": ["content-type"],
                    },
                }
            ]
        }
    )
    r = requests.get(f"{proxy.url}/json")
    assert r.status_code == 200
    assert "Content-Type" not in r.headers
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Debug"] == "1"
    assert json.loads(r.content)["city"] == "berlin"
    assert int(r.headers["Content-Length"]) == len(r.content)

    untouched = requests.get(f"{proxy.url}/html")  # another path: no rule matches
    assert untouched.headers["Content-Type"] == "text/html"
    wait_until(lambda: len(proxy.decisions) == 2)
    injected = [d for d in proxy.decisions if d.rule]
    assert [(d.rule, d.status) for d in injected] == [("no-type", 200)]
