"""``match: {grpc: ...}``: validation, matching and explain; the gRPC protocol helpers."""

from __future__ import annotations

import pytest

from chaosproxy.core import grpc_protocol as gp
from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.scenario import ScenarioError, load_data, load_text

ERR = {"type": "error", "status": 503}


def call(
    method: str, content_type: str | None = "application/grpc", *extra: tuple[str, str]
) -> SimpleRequest:
    headers = [("content-type", content_type)] if content_type is not None else []
    return SimpleRequest(
        method="POST", host="api.internal", path=method, headers=[*headers, *extra]
    )


def engine_for(pattern: str) -> Engine:
    return Engine(
        load_data({"seed": 1, "rules": [{"name": "g", "match": {"grpc": pattern}, "fault": ERR}]})
    )


@pytest.mark.parametrize(
    ("pattern", "path", "content_type", "fires"),
    [
        ("pkg.Greeter/SayHello", "/pkg.Greeter/SayHello", "application/grpc", True),
        ("pkg.Greeter/SayHello", "/pkg.Greeter/SayHello", "application/grpc+proto", True),
        ("pkg.Greeter/SayHello", "/pkg.Greeter/SayHello", "Application/GRPC-web", True),
        ("pkg.Greeter/SayHello", "/pkg.Greeter/SayHelloAgain", "application/grpc", False),
        ("pkg.Greeter/SayHello", "/pkg.Greeter/SayHello", "application/json", False),
        ("pkg.Greeter/SayHello", "/pkg.Greeter/SayHello", None, False),
        ("pkg.Greeter/*", "/pkg.Greeter/SayHello", "application/grpc", True),
        ("pkg.Greeter/*", "/pkg.Other/SayHello", "application/grpc", False),
        ("*/Get*", "/a.b.Store/GetItem", "application/grpc", True),
        ("*/Get*", "/a.b.Store/ListItems", "application/grpc", False),
        ("pkg.*", "/pkg.v1.Store/Put", "application/grpc", True),  # * crosses /
        ("pkg.*", "/other.Store/Put", "application/grpc", False),
        ("*", "/any.Service/Any", "application/grpc", True),
        ("Pkg.Greeter/*", "/pkg.Greeter/SayHello", "application/grpc", False),  # case-sensitive
        ("re:^pkg\\.v[0-9]+\\.", "/pkg.v2.Store/Put", "application/grpc", True),
        ("re:^pkg\\.v[0-9]+\\.", "/xpkg.v2.Store/Put", "application/grpc", False),
    ],
)
def test_grpc_match(pattern: str, path: str, content_type: str | None, fires: bool) -> None:
    decision = engine_for(pattern).decide(call(path, content_type))
    assert (decision is not None) is fires


def test_grpc_match_combines_with_other_conditions() -> None:
    engine = Engine(
        load_data(
            {
                "seed": 1,
                "rules": [
                    {
                        "name": "tenant",
                        "match": {"grpc": "pkg.S/*", "headers": {"x-tenant": "acme"}},
                        "fault": ERR,
                    }
                ],
            }
        )
    )
    acme = call("/pkg.S/M", "application/grpc", ("X-Tenant", "acme"))
    other = call("/pkg.S/M", "application/grpc", ("X-Tenant", "zeta"))
    assert engine.decide(acme) is not None
    assert engine.decide(other) is None


def test_explain_says_why_a_grpc_rule_does_not_fire() -> None:
    engine = engine_for("pkg.Greeter/*")
    (verdict,) = engine.explain(call("/pkg.Greeter/SayHello", "application/json"))
    assert not verdict.fires
    assert verdict.reason.endswith(
        "not a gRPC call (content-type 'application/json', not application/grpc*)"
    )
    (verdict,) = engine.explain(call("/pkg.Greeter/SayHello", None))
    assert "not a gRPC call (content-type none" in verdict.reason
    (verdict,) = engine.explain(call("/other.Svc/Do"))
    assert "gRPC method other.Svc/Do does not match 'pkg.Greeter/*'" in verdict.reason
    (verdict,) = engine.explain(call("/pkg.Greeter/SayHello"))
    assert verdict.fires


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("/pkg.S/M", "write the method without the leading slash ('pkg.S/M')"),
        ("pkg.Greeter", "'pkg.Greeter' names no method: write SERVICE/METHOD (pkg.Greeter/*"),
        ("pkg.S/M/x", "a gRPC method is one SERVICE/METHOD"),
        ("pkg.S/", "a gRPC method is one SERVICE/METHOD"),
        ("pkg S/M", "has characters no gRPC service or method name has"),
        ("re:(?=x)", "lookahead"),
        ("", "an empty pattern names no method: write SERVICE/METHOD; e.g."),
    ],
)
def test_malformed_grpc_patterns_are_located(pattern: str, message: str) -> None:
    text = f'rules:\n  - match:\n      grpc: "{pattern}"\n    fault: {{type: error}}\n'
    with pytest.raises(ScenarioError) as caught:
        load_text(text, "s.yaml")
    (line,) = caught.value.lines
    assert line.startswith("s.yaml:3:13: rules[0].match.grpc: ")
    assert message in line


def test_a_grpc_match_is_not_empty() -> None:
    scenario = load_text("rules: [{match: {grpc: '*'}, fault: {type: error}}]")
    assert not scenario.rules[0].match.empty


def test_helpers() -> None:
    assert gp.is_grpc("application/grpc") and gp.is_grpc(" application/grpc+json")
    assert not gp.is_grpc("application/json") and not gp.is_grpc(None)
    assert gp.method_of("/pkg.S/M") == "pkg.S/M"
    assert gp.parse_timeout("100m") == pytest.approx(0.1)
    assert gp.parse_timeout("5S") == 5.0 and gp.parse_timeout("2H") == 7200.0
    assert gp.parse_timeout("250000u") == pytest.approx(0.25)
    assert gp.parse_timeout("123456789S") is None  # at most 8 digits
    assert gp.parse_timeout("1s") is None and gp.parse_timeout(None) is None
    assert gp.encode_message("ok: 100% ü\n") == "ok: 100%25 %C3%BC%0A"
    assert gp.status_headers(14, "") == {"content-type": "application/grpc", "grpc-status": "14"}
    assert gp.STATUS_NAMES[14] == "UNAVAILABLE" and len(gp.STATUS_CODES) == 17
