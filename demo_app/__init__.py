"""The workshop demo: a Flask app that calls a flaky weather upstream through chaosproxy.

``create_app(config=None)`` is the application factory. Configuration comes from the
defaults below, then ``DEMO_*`` environment variables (``DEMO_UPSTREAM_URL``,
``DEMO_PROXY_ADMIN_URL``... as docker-compose sets them), then ``config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

DASHBOARD = Path(__file__).parent / "dashboard"

DEFAULTS: dict[str, Any] = {
    # where forecasts come from: the proxy in the demo (which forwards to the fake upstream)
    "UPSTREAM_URL": "http://127.0.0.1:8080",
    # chaosproxy's control API, for the scenario picker and the active scenario/phase
    "PROXY_ADMIN_URL": "http://127.0.0.1:8475",
    "PROXY_ADMIN_TOKEN": None,
    "CONNECT_TIMEOUT": 0.5,
    "READ_TIMEOUT": 2.0,
    "RETRY_ATTEMPTS": 3,
    "RETRY_MAX_TIME": 5.0,
    "RETRY_AFTER_CAP": 2.0,
    "BACKOFF_INITIAL": 0.1,
    "BACKOFF_MAX": 1.0,
    "BREAKER_FAIL_MAX": 5,
    "BREAKER_RESET_TIMEOUT": 10.0,
    "TRAFFIC_RATE": 5.0,
    "TRAFFIC_WORKERS": 16,
    "TRAFFIC_CITIES": ["berlin", "paris", "tokyo", "lima", "oslo", "nairobi"],
    "TRAFFIC_AUTOSTART": False,
    # the real upstream, for the dashboard's "Assess" button (chaosproxy demo sets it);
    # None: the button says how to enable it
    "ASSESS_UPSTREAM_URL": None,
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """A fresh demo app: its own breaker, cache, metrics and traffic (nothing global)."""
    from chaosproxy.demo_app.assessment import Assessments
    from chaosproxy.demo_app.metrics import Metrics
    from chaosproxy.demo_app.proxyctl import ProxyControl
    from chaosproxy.demo_app.state import DemoState
    from chaosproxy.demo_app.traffic import Traffic
    from chaosproxy.demo_app.views import bp
    from chaosproxy.demo_app.weather import ClientSettings, WeatherClient, make_breaker

    app = Flask(
        __name__,
        template_folder=str(DASHBOARD / "templates"),
        static_folder=str(DASHBOARD / "static"),
    )
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("DEMO")
    if config:
        app.config.update(config)
    c = app.config
    settings = ClientSettings(
        connect_timeout=float(c["CONNECT_TIMEOUT"]),
        read_timeout=float(c["READ_TIMEOUT"]),
        max_attempts=int(c["RETRY_ATTEMPTS"]),
        max_retry_time=float(c["RETRY_MAX_TIME"]),
        retry_after_cap=float(c["RETRY_AFTER_CAP"]),
        backoff_initial=float(c["BACKOFF_INITIAL"]),
        backoff_max=float(c["BACKOFF_MAX"]),
    )
    client = WeatherClient(
        c["UPSTREAM_URL"],
        settings,
        breaker=make_breaker(int(c["BREAKER_FAIL_MAX"]), float(c["BREAKER_RESET_TIMEOUT"])),
    )
    client.session.trust_env = False  # the demo names its upstream; ignore HTTP_PROXY
    state = DemoState(
        client=client,
        metrics=Metrics(),
        proxy=ProxyControl(c["PROXY_ADMIN_URL"], c["PROXY_ADMIN_TOKEN"]),
        traffic=Traffic(
            lambda city: state.lookup(city),
            c["TRAFFIC_CITIES"],
            workers=int(c["TRAFFIC_WORKERS"]),
            rate=float(c["TRAFFIC_RATE"]),
        ),
        assessments=Assessments(c["ASSESS_UPSTREAM_URL"] or None),
    )
    app.extensions["chaosdemo"] = state
    app.register_blueprint(bp)
    if c["TRAFFIC_AUTOSTART"]:
        state.traffic.start()
    return app
