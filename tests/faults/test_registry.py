"""The fault registry: every module of the package is found, each type declares its
capabilities, and register() refuses declarations that do not hang together."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import ValidationError

import chaosproxy.faults as faults
from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.fault import FAULT_TYPES, Capabilities, Fault, Stage, Wire, register
from chaosproxy.core.scenario import ScenarioError, load_text
from chaosproxy.faults.latency import Latency
from chaosproxy.faults.rate_limit import RateLimit, Window

REQUEST, RESPONSE, CONNECT = Stage.REQUEST, Stage.RESPONSE, Stage.CONNECT
MESSAGE = Stage.MESSAGE


def test_every_module_of_the_package_is_a_registered_fault_type() -> None:
    modules = {m.name for m in pkgutil.iter_modules(faults.__path__)}
    assert modules == set(FAULT_TYPES)
    for name, cls in FAULT_TYPES.items():
        assert cls.__module__ == f"chaosproxy.faults.{name}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("latency", Capabilities((REQUEST, RESPONSE), False, False, True, False, False)),
        ("timeout", Capabilities((REQUEST,), False, False, False, False, False)),
        ("error", Capabilities((REQUEST, RESPONSE), False, False, False, False, False)),
        ("abort", Capabilities((REQUEST, RESPONSE), False, False, False, False, False)),
        ("malformed", Capabilities((RESPONSE,), True, False, False, False, False)),
        ("throttle", Capabilities((REQUEST,), False, True, False, False, False)),
        ("rate_limit", Capabilities((REQUEST,), False, False, False, True, True)),
        ("grpc_status", Capabilities((REQUEST,), False, False, False, False, False)),
        ("connect_refused", Capabilities((CONNECT,), False, False, False, False, False)),
        ("dns_failure", Capabilities((CONNECT,), False, False, False, False, False)),
        ("connect_delay", Capabilities((CONNECT,), False, False, False, False, False)),
        ("tls_failure", Capabilities((CONNECT,), False, False, False, False, False, True)),
        ("ws_drop", Capabilities((MESSAGE,), False, False, False, False, False)),
        ("ws_delay", Capabilities((MESSAGE,), False, False, False, False, False)),
        ("ws_corrupt", Capabilities((MESSAGE,), False, False, False, False, False)),
        ("ws_close", Capabilities((MESSAGE,), False, False, False, False, False)),
    ],
)
def test_builtin_types_declare_their_capabilities(name: str, expected: Capabilities) -> None:
    assert FAULT_TYPES[name].capabilities() == expected


def test_the_stage_is_the_on_field_or_the_types_one_stage() -> None:
    assert Latency(delay=1).stage is REQUEST
    assert Latency(delay=1, on="response").stage is RESPONSE
    assert FAULT_TYPES["malformed"](mode="empty").stage is RESPONSE


def test_on_takes_request_or_response_but_not_connect() -> None:
    with pytest.raises(ValidationError, match="Input should be 'request' or 'response'"):
        Latency(delay=1, on="connect")


def _fault_class(name: str, **attrs: Any) -> type[Fault]:
    """A throwaway fault class (not registered) with ``attrs`` as its class body."""

    async def apply(self: Fault, wire: Wire) -> None:
        return None

    body: dict[str, Any] = {
        "__annotations__": {"type": Literal[name]},  # type: ignore[valid-type]
        "type": name,
        "apply": apply,
        "describe": lambda self: name,
        "__module__": __name__,
    }
    body["__annotations__"].update(attrs.pop("__annotations__", {}))
    body.update(attrs)
    return type(f"Test_{name}", (Fault,), body)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"gates": True}, "gates its rule: it must define gate()"),
        ({"stateful": True}, "is stateful: it must define new_state()"),
        ({"stages": (REQUEST, RESPONSE)}, "has several stages: it needs an 'on' field"),
        ({"stages": ()}, "stages must name one or more Stage"),
        ({"handshake": True}, "handshake faults are connect faults"),
        (
            {"stages": (CONNECT, REQUEST), "__annotations__": {"on": str}, "on": "request"},
            "a connect fault acts in no other stage",
        ),
    ],
)
def test_register_refuses_capabilities_that_do_not_hang_together(
    attrs: dict[str, Any], message: str
) -> None:
    cls = _fault_class("inconsistent", **attrs)
    with pytest.raises(ValueError, match=message):
        register(cls)
    assert "inconsistent" not in FAULT_TYPES


def test_register_refuses_a_second_type_of_the_same_name() -> None:
    with pytest.raises(ValueError, match="needs a unique default for 'type'"):
        register(_fault_class("latency"))
    assert FAULT_TYPES["latency"] is Latency


def test_a_connect_stage_type_can_be_declared() -> None:
    cls = _fault_class("on_connect", stages=(Stage.CONNECT,))
    assert cls.capabilities().stages == (Stage.CONNECT,)
    assert cls(type="on_connect").stage is Stage.CONNECT


class _Header:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def __call__(self, name: str) -> str | None:
        return self.values.get(name)


def _snapshot(state: dict[str, Window]) -> dict[str, tuple[float, int]]:
    return {k: (w.start, w.count) for k, w in state.items()}


def test_rate_limit_gate_counts_under_the_limit_and_a_dry_run_changes_nothing() -> None:
    fault = RateLimit(limit=2, per=10, key="header:X-Api-Key")
    state = fault.new_state()
    key = _Header({"X-Api-Key": "a"})
    assert fault.gate(state, key, 100.0, dry_run=True) is None
    assert state == {}  # a dry run opens no window
    assert fault.gate(state, key, 100.0, dry_run=False) is None
    assert fault.gate(state, key, 101.0, dry_run=False) is None
    before = _snapshot(state)
    assert fault.gate(state, key, 102.5, dry_run=True) == 8  # over: ceil(110 - 102.5)
    assert fault.gate(state, key, 111.0, dry_run=True) is None  # the window would roll
    assert _snapshot(state) == before
    assert fault.gate(state, _Header({"X-Api-Key": "b"}), 102.0, dry_run=False) is None
    assert fault.gate(state, key, 102.5, dry_run=False) == 8  # rejections do not count
    assert _snapshot(state)["a"] == (100.0, 2)
    assert fault.gate_declines() == "is under its rate limit"


class _Plain(Fault):
    type: Literal["plain"] = "plain"
    stages: ClassVar[tuple[Stage, ...]] = (REQUEST,)

    async def apply(self, wire: Wire) -> None:
        return None

    def describe(self) -> str:
        return "plain"


def test_a_type_that_does_not_gate_says_so_when_asked_to() -> None:
    with pytest.raises(TypeError, match="_Plain does not gate its rule"):
        _Plain().gate(None, _Header({}), 0.0, dry_run=True)
    assert _Plain().new_state() is None


# --------------------------------------------------------------------------- the docs page

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "adding-a-fault.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(), re.S)


def test_adding_a_fault_page_shows_the_header_change_exactly_as_it_is() -> None:
    shown: dict[str, str] = {}
    for block in _blocks("diff"):
        header = re.search(r"^\+\+\+ b/(\S+)\n@@ -0,0 \+1,(\d+) @@\n", block, re.M)
        assert header is not None, "each diff block is one new file"
        lines = block[header.end() :].splitlines()
        assert len(lines) == int(header.group(2)) and all(ln.startswith("+") for ln in lines)
        shown[header.group(1)] = "".join(ln[1:] + "\n" for ln in lines)
    assert set(shown) == {"chaosproxy/faults/header.py", "tests/faults/test_header.py"}
    for path, text in shown.items():
        assert (ROOT / path).read_text() == text, f"docs/adding-a-fault.md: {path} differs"


def test_adding_a_fault_page_examples_load_and_say_what_the_commands_print() -> None:
    scenario_text, typo_text = _blocks("yaml")
    console = "\n".join(_blocks("console"))
    scenario = load_text(scenario_text, source="no-content-type.yaml")
    [rule] = scenario.rules
    verdict = Engine(scenario).explain(
        SimpleRequest("GET", "weather.example", "/v1/forecast/berlin")
    )
    assert f"FIRES {rule.label} [{rule.describe()}]: {verdict[0].reason}" in console
    assert f"seed {scenario.seed})" in console
    with pytest.raises(ScenarioError) as info:
        load_text(typo_text, source="typo.yaml")
    assert f"\n{info.value}\n" in console
