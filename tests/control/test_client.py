"""The one control client against a real ControlServer (a fake target) on loopback."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from chaosproxy.control.client import (
    ControlClient,
    ControlRefused,
    ControlUnreachable,
    admin_base,
)
from chaosproxy.control.server import ControlServer
from tests.control.test_routes import FakeTarget


class Served:
    def __init__(self, token: str | None) -> None:
        self.target = FakeTarget()
        self.target.ready.set()
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.target, "127.0.0.1", 0, token)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(getattr(request, "param", None))
    yield s
    s.close()


def test_the_endpoints_answer_their_documents(served: Served) -> None:
    client = ControlClient(served.server.url)
    assert client.scenario()["name"] == "passthrough"
    assert client.stats()["requests"] == 0
    assert client.decisions(limit=5) == []
    assert "outage" in [s["name"] for s in client.scenarios()]
    assert client.apply({"name": "outage"})["name"] == "outage"
    assert served.target.engine.scenario.label == "outage"
    verdicts = client.explain({"method": "GET", "url": "http://x/y"})
    assert verdicts["scenario"] == "outage"


def test_a_refusal_carries_the_api_s_error(served: Served) -> None:
    client = ControlClient(served.server.url)
    with pytest.raises(ControlRefused) as info:
        client.jump("nope")
    assert info.value.status == 400
    assert str(info.value).startswith(f"{served.server.url}/scenario/phase answered 400: ")


@pytest.mark.parametrize("served", ["s3cret"], indirect=True)
def test_the_token_is_sent_and_a_wrong_one_is_a_clear_401(served: Served) -> None:
    assert ControlClient(served.server.url, "s3cret").stats()["requests"] == 0
    with pytest.raises(ControlRefused, match="answered 401: missing or wrong token"):
        ControlClient(served.server.url, "wrong").stats()
    status, body = ControlClient(served.server.url).request("GET", "/stats")
    assert status == 401 and "Bearer" in body["error"]


@pytest.mark.parametrize("served", ["s3cret"], indirect=True)
def test_a_probe_without_the_token_gets_the_status_word_only(served: Served) -> None:
    """Kubernetes probes cannot carry a Secret: GET /healthz answers them, with no detail."""
    status, body = ControlClient(served.server.url).request("GET", "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body = ControlClient(served.server.url, "s3cret").request("GET", "/healthz")
    assert status == 200 and body["status"] == "ok" and "scenario" in body
    served.target.ready.clear()  # not serving yet: the probe sees 503 "starting"
    assert ControlClient(served.server.url).request("GET", "/healthz") == (
        503,
        {"status": "starting"},
    )
    status, _ = ControlClient(served.server.url).request("POST", "/reset")
    assert status == 401  # only the bare health check is open


def test_a_foreign_host_name_gets_the_health_status_word_only(served: Served) -> None:
    """A probe sends the pod's address as Host: without a token that is not a loopback name,
    so only the status word comes back (the rest of the API refuses it)."""
    port = int(served.server.url.rsplit(":", 1)[1])
    for path, expected in (("/healthz", 200), ("/stats", 403)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path, headers={"Host": "10.1.2.3:8475"})
        answer = conn.getresponse()
        body = json.loads(answer.read())
        conn.close()
        assert answer.status == expected, body
    assert body != {"status": "ok"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/healthz", headers={"Host": "10.1.2.3:8475"})
    assert json.loads(conn.getresponse().read()) == {"status": "ok"}
    conn.close()


def test_nothing_listening_is_unreachable_with_a_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ControlUnreachable) as info:
            ControlClient(f"127.0.0.1:{port}", timeout=2).stats()
    assert str(info.value) == (
        f"cannot reach the control API at http://127.0.0.1:{port} (nothing answers there)"
    )


@pytest.mark.unit
def test_admin_base_takes_host_port_or_a_url() -> None:
    assert admin_base("127.0.0.1:8475") == "http://127.0.0.1:8475"
    assert admin_base("https://proxy:1/") == "https://proxy:1"
