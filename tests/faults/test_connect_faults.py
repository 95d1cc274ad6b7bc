"""Connect-time faults (``connect_refused``, ``dns_failure``, ``connect_delay``,
``tls_failure``): what each asks of the wire, what the scenario model refuses, and where
the engine decides them. On the wire: tests/integration/test_connect_faults_wire.py."""

from __future__ import annotations

import asyncio
import re

import pytest

from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.fault import FAULT_TYPES, Fault, Stage
from chaosproxy.core.scenario import ScenarioError, load_data, load_text
from tests.faults.fakewire import FakeWire


def applied(fault: Fault, **wire: object) -> FakeWire:
    fake = FakeWire(**wire)  # type: ignore[arg-type]
    asyncio.run(fault.apply(fake))
    return fake


def fault(text: str) -> Fault:
    [found] = load_text(f"rules:\n  - fault: {text}\n").rules[0].fault
    return found


def test_connect_refused_fails_the_connect_as_a_refused_socket_does() -> None:
    wire = applied(fault("{type: connect_refused}"), upstream=("api.test", 8443))
    assert wire.actions == [("fail_connect", "[Errno 111] Connect call failed ('api.test', 8443)")]


def test_dns_failure_fails_the_connect_as_the_resolver_does() -> None:
    wire = applied(fault("{type: dns_failure}"))
    assert wire.actions == [("fail_connect", "[Errno -2] Name or service not known")]


def test_connect_delay_waits_from_the_arrival_with_seeded_jitter() -> None:
    assert applied(fault("{type: connect_delay, delay: 2s}")).actions == [("sleep_until", 1002.0)]
    jittered = fault("{type: connect_delay, delay: 1s, jitter: 500ms}")
    first = applied(jittered, seed=4).actions
    assert first == applied(jittered, seed=4).actions  # the fault's own seeded stream
    [(_, when)] = first
    assert 1000.5 <= when <= 1001.5 and when != 1001.0


@pytest.mark.parametrize(("mode", "certificate"), [("alert", None), ("expired", "expired")])
def test_tls_failure_fails_the_handshake(mode: str, certificate: str | None) -> None:
    wire = applied(fault(f"{{type: tls_failure, mode: {mode}}}"))
    assert wire.actions == [("fail_handshake", certificate)]


def test_they_describe_themselves_and_declare_the_connect_stage() -> None:
    described = {
        "{type: connect_refused}": "connect_refused",
        "{type: dns_failure}": "dns_failure",
        "{type: connect_delay, delay: 250ms, jitter: 50ms}": "connect_delay 250ms ±50ms",
        "{type: tls_failure}": "tls_failure",
        "{type: tls_failure, mode: self_signed}": "tls_failure self_signed",
    }
    for text, description in described.items():
        found = fault(text)
        assert found.describe() == description and found.stage is Stage.CONNECT
    assert [n for n, c in FAULT_TYPES.items() if c.handshake] == ["tls_failure"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{match: {path: /x}, fault: {type: connect_refused}}",
            "rules[0].match.path: "
            "connect_refused is decided before any request is read: match on host only",
        ),
        ("{match: {headers: {X-A: b}}, fault: {type: dns_failure}}", "rules[0].match.headers"),
        ("{match: {grpc: 'a.B/C'}, fault: {type: connect_refused}}", "rules[0].match.grpc"),
        (
            "{fault: [{type: connect_delay, delay: 1s}, {type: error}]}",
            "rules[0].fault: connect_delay acts before any request is read, so it is its rule's "
            "only fault",
        ),
        (
            "{per_request: {times: 1}, fault: {type: tls_failure}}",
            "rules[0].per_request: per_request needs a request; tls_failure acts before one",
        ),
        ("{sticky: 'header:X-A', fault: {type: connect_refused}}", "rules[0].sticky"),
        ("{fault: {type: connect_delay}}", "rules[0].fault: missing required key 'delay'"),
        ("{fault: {type: connect_delay, delay: 1s, jitter: 2s}}", "must not be larger"),
        ("{fault: {type: connect_delay, delay: 11m}}", "longer than 10m"),
        ("{fault: {type: tls_failure, mode: revoked}}", "rules[0].fault.mode"),
        ("{fault: {type: connect_refused, on: response}}", "unknown key 'on'"),
    ],
)
def test_refused_with_a_located_error(rule: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)) as info:
        load_text(f"rules:\n  - {rule}\n")
    assert str(info.value).startswith("<string>:2:")


def _engine() -> Engine:
    scenario = load_data(
        {
            "rules": [
                {"name": "tls", "match": {"host": "a.test"}, "fault": {"type": "tls_failure"}},
                {
                    "name": "refuse",
                    "match": {"host": "a.test"},
                    "fault": {"type": "connect_refused"},
                },
                {"name": "error", "fault": {"type": "error", "status": 503}},
            ]
        }
    )
    return Engine(scenario, seed=1)


@pytest.mark.parametrize(
    ("point", "host", "fires"),
    [
        ("handshake", "a.test", "tls"),  # a reverse-mode client's handshake: tls_failure only
        ("handshake", "b.test", None),
        ("connect", "a.test", "tls"),  # a CONNECT: every connect-time rule, in order
        ("connect", "b.test", None),  # (request rules are not decided at a CONNECT)
        ("request", "a.test", "refuse"),  # its own connection: connect rules, then the others
        ("request", "b.test", "error"),
        ("tunneled", "a.test", "error"),  # its tunnel's CONNECT decided the connection
    ],
)
def test_each_point_decides_its_kinds_of_rules(point: str, host: str, fires: str | None) -> None:
    decision = _engine().decide(SimpleRequest("GET", host, "/", point=point))
    assert (decision.name if decision else None) == fires


def test_the_addon_asks_at_a_connect_or_handshake_only_when_a_rule_is_decided_there() -> None:
    engine = _engine()
    assert engine.decides_at("connect") and engine.decides_at("handshake")
    only_requests = Engine(load_data({"rules": [{"fault": {"type": "error"}}]}))
    assert not only_requests.decides_at("connect") and not only_requests.decides_at("handshake")
    refuse = Engine(load_data({"rules": [{"fault": {"type": "connect_refused"}}]}))
    assert refuse.decides_at("connect") and not refuse.decides_at("handshake")


def test_explain_says_where_a_rule_is_decided() -> None:
    verdicts = _engine().explain(SimpleRequest("GET", "a.test", "/", point="tunneled"))
    assert [v.fires for v in verdicts] == [False, False, True]
    assert verdicts[0].reason == (
        "not decided here: a handshake-time rule is decided at a CONNECT, or as a "
        "reverse-mode client starts its TLS handshake"
    )
    assert verdicts[1].reason.startswith("not decided here: a connect-time rule is decided")


def test_explain_of_a_connect_decides_connect_time_rules_only() -> None:
    from chaosproxy.control.documents import explain_document, explain_request

    engine = _engine()
    connect = explain_document(engine, explain_request("CONNECT", "a.test:443"))
    assert connect["fires"] == "tls"
    assert connect["verdicts"][2]["reason"].startswith("not decided here: a request-time rule")
    assert explain_document(engine, explain_request("GET", "http://a.test/"))["fires"] == "refuse"
