from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses as responses_lib
from flask import Flask
from flask.testing import FlaskClient

from demo_app import create_app
from demo_app.state import DemoState
from demo_app.upstream import create_upstream
from tests.support import serving

#: the upstream and admin addresses of app fixtures whose HTTP calls `responses` answers
UPSTREAM = "http://weather.test"
ADMIN = "http://admin.test"


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[str]:
    """The real fake weather service on a free loopback port, for the session."""
    with serving(create_upstream()) as url:
        yield url


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Fresh demo apps (no sleeping between retries); their traffic is stopped afterwards."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        base: dict[str, Any] = {"TESTING": True, "UPSTREAM_URL": UPSTREAM, "PROXY_ADMIN_URL": ADMIN}
        base.update(config)
        app = create_app(base)
        demo(app).client.sleep = lambda seconds: None
        apps.append(app)
        return app

    yield make
    for app in apps:
        demo(app).traffic.stop()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def mocked() -> Iterator[responses_lib.RequestsMock]:
    """``responses`` at the HTTP layer: every call must be registered, and unused ones fail."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def demo(app: Flask) -> DemoState:
    state: DemoState = app.extensions["chaosdemo"]
    return state
