"""The faults reference is generated from the registry (docs/hooks/faults.py): every
registered type, each with its docstring, parameters, defaults and limits."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest

from chaosproxy.core import fault
from chaosproxy.core.fault import FAULT_TYPES, Fault, Wire
from tests.docs.examples import DOCS

pytestmark = pytest.mark.unit  # the hook, called in process


def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks_faults", DOCS / "hooks" / "faults.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(text: str, name: str) -> str:
    start = text.index(f"\n## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_every_registered_type_has_its_section_with_every_parameter() -> None:
    text = hook().reference(DOCS)
    assert FAULT_TYPES, "no fault type registered"
    for name, cls in FAULT_TYPES.items():
        part = section(text, name)
        first_line = (cls.__doc__ or "").strip().split("\n")[0].replace("``", "`")
        assert first_line in part
        for field, info in cls.model_fields.items():
            if field != "type":
                assert f"| `{info.alias or field}` |" in part, (name, field)


def test_types_defaults_and_limits_come_from_the_models() -> None:
    text = hook().reference(DOCS)
    error = section(text, "error")
    status = FAULT_TYPES["error"].model_json_schema()["properties"]["status"]
    low, high = status["minimum"], status["maximum"]
    assert f"| `status` | integer {low}–{high} | `{status['default']}` |" in error
    assert "| `on` | `request` \\| `response` | `request` |" in error
    assert "| `mode` | `truncate` \\| " in section(text, "malformed")
    assert "| required |" in section(text, "malformed")
    assert "| `delay` | duration | none |" in section(text, "latency")
    assert "#latency-lognormal" in section(text, "latency")  # the nested model's own table


def test_a_new_fault_type_appears_without_touching_the_docs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Drip(Fault):
        """Drip the answer one byte at a time (a type that exists only in this test)."""

        type: Literal["drip"] = "drip"
        bytes_per_drip: int = 1

        async def apply(self, wire: Wire) -> None:  # pragma: no cover - never applied
            pass

        def describe(self) -> str:
            return "drip"

    monkeypatch.setitem(FAULT_TYPES, "drip", Drip)
    text = hook().reference(DOCS)
    drip = section(text, "drip")
    assert "Drip the answer one byte at a time" in drip
    assert "| `bytes_per_drip` | integer | `1` |" in drip
    assert "| [`drip`](#drip) |" in text


def test_the_page_finds_fault_types_as_the_loader_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault package the core's registry knows (FAULT_PACKAGES) is on the page too: the
    hook calls ``fault_types()``, it does not walk ``chaosproxy.faults`` on its own."""
    package = tmp_path / "extra_faults_for_docs"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from typing import Literal\n"
        "from chaosproxy.core.fault import Fault, Wire, register\n\n\n"
        "@register\n"
        "class Wobble(Fault):\n"
        '    """Wobble the answer (a type from a package outside chaosproxy.faults)."""\n\n'
        '    type: Literal["wobble"] = "wobble"\n\n'
        "    async def apply(self, wire: Wire) -> None:\n"
        "        pass\n\n"
        "    def describe(self) -> str:\n"
        '        return "wobble"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fault, "FAULT_TYPES", dict(FAULT_TYPES))  # register() adds here
    monkeypatch.setattr(fault, "FAULT_PACKAGES", (*fault.FAULT_PACKAGES, package.name))
    try:
        text = hook().reference(DOCS)
    finally:
        sys.modules.pop(package.name, None)
    assert "Wobble the answer" in section(text, "wobble")
    assert "wobble" not in FAULT_TYPES  # the real registry is untouched


def test_a_note_for_an_unknown_type_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notes = tmp_path / "fault-notes"
    notes.mkdir()
    (notes / "error.md").write_text("**What the client sees**: a test note.\n")
    (notes / "eror.md").write_text("a typo in the file name\n")
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.faults"):
        text = hook().reference(tmp_path)
    assert "a test note" in section(text, "error")
    assert "eror.md describes no registered fault type" in caplog.text


def test_the_page_hook_replaces_only_the_marker() -> None:
    module = hook()
    page = "# Faults\n\nintro\n\n" + module.MARKER + "\n"
    out = module.on_page_markdown(page, None, {"docs_dir": str(DOCS)}, None)
    assert out.startswith("# Faults\n\nintro\n\n| type | what it does |")
    assert module.MARKER not in out
    assert module.on_page_markdown("# Other", None, {"docs_dir": str(DOCS)}, None) == "# Other"
