"""``malformed`` as real clients (curl, requests, raw sockets) see it through a real proxy."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests

from tests.integration.test_modes import https_behind_forward_proxy
from tests.support import body_bytes, curl, wait_until


def proxy_for(make_proxy, **fault):
    return make_proxy(
        {"seed": 3, "rules": [{"name": "broken", "fault": {"type": "malformed", **fault}}]}
    )


def raw_get(port: int, path: str) -> bytes:
    """Everything the proxy sends for one request, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
    return bytes(data)


@pytest.mark.parametrize("path", ["/bytes/40000", "/chunked/40000", "/json", "/gzip-json"])
def test_truncate_is_an_incomplete_transfer(make_proxy, path: str) -> None:
    proxy = proxy_for(make_proxy, mode="truncate", keep=0.25)
    assert curl(f"{proxy.url}{path}")[0] == 18
    head, _, body = raw_get(proxy.port, path).partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:])
    assert "transfer-encoding" not in headers
    promised = int(headers["content-length"])
    assert len(body) == int(promised * 0.25) < promised
    if path == "/chunked/40000":
        assert promised == 40000 and body == body_bytes(40000)[:10000]
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{proxy.url}{path}")


def test_truncate_is_logged_as_truncated(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="truncate")
    assert curl(f"{proxy.url}/json")[0] == 18
    wait_until(lambda: len(proxy.decisions) == 1)
    [record] = proxy.decisions
    assert (record.outcome, record.status, record.rule) == ("truncated", 200, "broken")


def test_truncate_on_http2_resets_the_stream(make_proxy, tmp_path: Path) -> None:
    scenario = {"rules": [{"fault": {"type": "malformed", "mode": "truncate"}}]}
    with https_behind_forward_proxy(make_proxy, tmp_path, scenario) as (https_url, proxy, ca):
        args = ("--proxy", proxy.url, "--cacert", ca)
        assert curl(f"{https_url}/bytes/5000", "--http2", *args)[0] == 92  # stream error
        assert curl(f"{https_url}/bytes/5000", "--http1.1", *args)[0] == 18


def test_truncate_of_an_empty_body_sends_it_whole(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="truncate")
    assert curl(f"{proxy.url}/empty")[:2] == (0, "200")


@pytest.mark.filterwarnings("ignore:Brotli")
def test_invalid_json_is_a_json_200_that_does_not_parse(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="invalid_json")
    for path in ("/json", "/gzip-json", "/br-json"):
        r = requests.get(f"{proxy.url}{path}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        if path == "/json":
            assert int(r.headers["content-length"]) == len(r.content)
        with pytest.raises(ValueError):
            json.loads(r.content)
        assert r.text.lstrip().startswith("{")


@pytest.mark.filterwarnings("ignore:Brotli")
def test_compressed_answers_are_corrupted_as_the_client_decodes_them(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="mutate_json", fields=["temp"], action="null")
    for path, encoding in (("/gzip-json", "gzip"), ("/br-json", "br")):
        r = requests.get(f"{proxy.url}{path}")
        assert r.headers["content-encoding"] == encoding
        assert r.json() == {"city": "berlin", "temp": None}


def test_garbage_is_random_bytes_of_the_same_length(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="garbage")
    r = requests.get(f"{proxy.url}/bytes/5000")
    assert r.status_code == 200 and len(r.content) == 5000 and r.content != body_bytes(5000)
    chunked = requests.get(f"{proxy.url}/chunked/3000")
    assert len(chunked.content) == 3000 and chunked.content != body_bytes(3000)
    gz = requests.get(f"{proxy.url}/gzip-json")
    assert len(gz.content) == len(json.dumps({"city": "berlin", "temp": 21.5}))


def test_empty_is_a_200_with_no_body(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="empty")
    for path in ("/json", "/gzip-json", "/status/503"):
        r = requests.get(f"{proxy.url}{path}")
        assert (r.status_code, r.content) == (200, b"")
        assert r.headers["content-length"] == "0"
    assert curl(f"{proxy.url}/json")[:2] == (0, "200")


def test_wrong_content_type_is_an_html_502(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="wrong_content_type")
    r = requests.get(f"{proxy.url}/json")
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in r.text
    with pytest.raises(ValueError):
        r.json()


def test_mutate_json_drops_a_field_and_keeps_the_rest(make_proxy) -> None:
    proxy = proxy_for(make_proxy, mode="mutate_json", fields=["wind.speed", "tags.0"])
    r = requests.get(f"{proxy.url}/json")
    assert r.json() == {"city": "berlin", "temp": 21.5, "tags": ["b"], "wind": {"dir": "N"}}
    assert int(r.headers["content-length"]) == len(r.content)


def test_json_modes_leave_other_bodies_alone(make_proxy, caplog) -> None:
    proxy = proxy_for(make_proxy, mode="invalid_json")
    r = requests.get(f"{proxy.url}/html")
    assert r.text == "<html><body>hi</body></html>"
    binary = requests.get(f"{proxy.url}/bytes/2000")
    assert binary.content == body_bytes(2000)
    assert "is not JSON" in caplog.text


EDGE_PATHS = ["/empty", "/bytes/3000", "/chunked/3000", "/gzip-json", "/html"]


@pytest.mark.filterwarnings("ignore:Brotli")
@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "invalid_json"},
        {"mode": "garbage"},
        {"mode": "empty"},
        {"mode": "wrong_content_type"},
        {"mode": "mutate_json", "fields": ["temp"], "action": "wrong_type"},
    ],
    ids=lambda f: f["mode"],
)
def test_every_mode_on_empty_binary_chunked_compressed_and_html_bodies(
    make_proxy, upstream, fault: dict
) -> None:
    proxy = proxy_for(make_proxy, **fault)
    session = requests.Session()
    for path in EDGE_PATHS:
        original = requests.get(f"{upstream.url}{path}")
        r = session.get(f"{proxy.url}{path}")
        framed = r.headers.get("content-length")
        if framed is not None and "content-encoding" not in r.headers:
            assert int(framed) == len(r.content), (path, r.headers)
        mode = fault["mode"]
        if mode == "wrong_content_type":
            assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
        elif mode == "empty":
            assert (r.status_code, r.content) == (200, b"")
        elif mode == "garbage":
            assert len(r.content) == len(original.content)
            assert r.content != original.content or not original.content
        elif path == "/gzip-json":
            assert r.headers["content-encoding"] == "gzip"
            if mode == "invalid_json":
                with pytest.raises(ValueError):
                    r.json()
            else:
                assert r.json() == {"city": "berlin", "temp": "21.5"}
        else:  # not JSON: left as it is
            assert (r.status_code, r.content) == (original.status_code, original.content)
