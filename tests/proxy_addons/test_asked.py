"""The addon's side of request_faults: who may ask (loopback, or the admin token), the
headers removed, ignored asks counted, with mitmproxy's test flows (no sockets)."""

from __future__ import annotations

from mitmproxy.test import tflow

from chaosproxy.core.engine import Engine
from chaosproxy.core.metrics import Metrics
from chaosproxy.core.scenario import load_text
from chaosproxy.proxy_addons.asked import AskedFaults, is_loopback

ON = load_text("request_faults: true\nrules: []")


def _flow(peer: str, **headers: str):  # type: ignore[no-untyped-def]
    flow = tflow.tflow()
    flow.client_conn.peername = (peer, 40000)
    for name, value in headers.items():
        flow.request.headers[name.replace("_", "-")] = value
    return flow


def _asked(token: str | None = "s3cret") -> tuple[AskedFaults, Engine, Metrics]:
    engine, metrics = Engine(ON, seed=1), Metrics()
    return AskedFaults(engine, lambda: token, metrics), engine, metrics


def test_loopback_addresses() -> None:
    for peer in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        assert is_loopback((peer, 1)), peer
    for peer in ("10.0.0.1", "::ffff:10.0.0.1", "192.168.1.5", "fe80::1%eth0", "nonsense"):
        assert not is_loopback((peer, 1)), peer
    assert not is_loopback(None)


def test_a_loopback_client_may_ask_and_the_headers_are_removed() -> None:
    asked, engine, _ = _asked()
    flow = _flow("127.0.0.1", X_Chaos_Fault="error=503", X_Chaos_Token="x")
    decision = asked.decide(flow)
    assert decision is not None and decision.name == "X-Chaos-Fault"
    assert decision.rule.describe() == "error 503" and decision.match_number == 1
    assert "X-Chaos-Fault" not in flow.request.headers
    assert "X-Chaos-Token" not in flow.request.headers
    assert (engine.requests, engine.injected, engine.asked) == (1, 1, 1)


def test_beyond_loopback_only_with_the_admin_token() -> None:
    asked, engine, metrics = _asked()
    assert asked.decide(_flow("10.0.0.7", X_Chaos_Fault="error=503")) is None
    wrong = _flow("10.0.0.7", X_Chaos_Fault="error=503", X_Chaos_Token="guess")
    assert asked.decide(wrong) is None
    assert "X-Chaos-Token" not in wrong.request.headers  # never sent upstream
    assert metrics.asks_ignored == {"not_allowed": 2}
    right = asked.decide(_flow("10.0.0.7", X_Chaos_Fault="abort", X_Chaos_Token="s3cret"))
    assert right is not None and right.rule.describe() == "abort reset"
    no_token, _, _ = _asked(token=None)  # no admin token configured: loopback only
    assert no_token.decide(_flow("10.0.0.7", X_Chaos_Fault="abort", X_Chaos_Token="")) is None
    assert engine.asked == 1


def test_off_the_headers_stay_and_nothing_is_counted() -> None:
    engine, metrics = Engine(load_text("rules: []")), Metrics()
    asked = AskedFaults(engine, lambda: None, metrics)
    flow = _flow("127.0.0.1", X_Chaos_Fault="error=503", X_Chaos_Token="t")
    assert not asked.asks(flow) and asked.decide(flow) is None
    assert flow.request.headers["X-Chaos-Fault"] == "error=503"
    assert flow.request.headers["X-Chaos-Token"] == "t"
    assert engine.requests == 0 and not metrics.asks_ignored


def test_an_invalid_ask_is_counted_and_the_request_goes_on_to_the_rules() -> None:
    asked, engine, metrics = _asked()
    flow = _flow("127.0.0.1", X_Chaos_Fault="error=42")
    assert asked.asks(flow)
    assert asked.decide(flow) is None
    assert metrics.asks_ignored == {"invalid": 1} and engine.requests == 0
    text = metrics.render({"scenario": "s", "seed": 1})
    assert 'chaosproxy_request_faults_ignored_total{reason="invalid"} 1' in text


def test_a_worker_addon_knows_the_admin_token_for_asks_beyond_loopback() -> None:
    from chaosproxy.proxy_addons.workers import WorkerSetup, make_worker_addon

    class Link:  # what a worker's addon asks of its link to the coordinator, here nothing
        def note_record(self, record: object) -> None: ...

    setup = WorkerSetup(1, None, ON, None, 1, "text", True, admin_token="s3cret")
    addon = make_worker_addon(setup, link=Link())  # type: ignore[arg-type]
    flow = _flow("10.0.0.7", X_Chaos_Fault="error=500", X_Chaos_Token="s3cret")
    decision = addon.asked.decide(flow)
    assert decision is not None and decision.rule.describe() == "error 500"
    assert addon.control.address is None  # a worker serves no control API of its own
