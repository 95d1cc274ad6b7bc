"""The one control client against a real ControlServer (a fake target) on loopback."""

from __future__ import annotations

import asyncio
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
