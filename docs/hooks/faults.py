"""MkDocs hook: the faults reference, generated from the fault models at build time.

``docs/faults.md`` holds an introduction and the marker ``<!-- faults:reference -->``;
this hook replaces the marker with one section per registered fault type, taken from
``chaosproxy.core.fault.fault_types()`` (the loader's own discovery, so a new fault
module appears without touching anything here): its
docstring, its parameters (type, default, constraints, description) from the pydantic
model's JSON Schema, and its declared capabilities. A hand-written note in
``docs/fault-notes/<type>.md`` (what the client sees, examples) is appended when there
is one; a note for a type that is not registered is a warning, so ``--strict`` fails.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from pathlib import Path
from typing import Any

MARKER = "<!-- faults:reference -->"
NOTES_DIR = "fault-notes"

log = logging.getLogger("mkdocs.hooks.faults")


def fault_types() -> dict[str, type]:
    """Every registered fault type, by YAML name, found as the loader finds them."""
    from chaosproxy.core.fault import fault_types as registered

    return dict(sorted(registered().items()))


def slug(text: str) -> str:
    """The anchor Markdown's toc extension gives a heading with this text."""
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _rst_to_md(text: str) -> str:
    """Docstrings use ``literal``; Markdown wants `literal`."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def docstring(cls: type) -> str:
    return _rst_to_md(inspect.cleandoc(cls.__doc__ or "")).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _constraints(node: dict[str, Any]) -> list[str]:
    out = []
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and high is not None:
        out.append(f"{_number(low)}–{_number(high)}")
    elif low is not None:
        out.append(f"≥ {_number(low)}")
    elif high is not None:
        out.append(f"≤ {_number(high)}")
    if "exclusiveMinimum" in node:
        out.append(f"> {_number(node['exclusiveMinimum'])}")
    if "exclusiveMaximum" in node:
        out.append(f"< {_number(node['exclusiveMaximum'])}")
    if "minLength" in node:
        out.append(f"at least {node['minLength']} characters")
    if "minItems" in node:
        out.append(f"at least {node['minItems']} items")
    return out


class Renderer:
    """Turns one model's JSON Schema into readable types, collecting nested models."""

    def __init__(self, schema: dict[str, Any], prefix: str) -> None:
        self.prefix = prefix
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self.nested: dict[str, dict[str, Any]] = {}

    def resolve(self, node: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        ref = node.get("$ref")
        if ref is None:
            return None, node
        name = ref.rsplit("/", 1)[-1]
        return name, self.defs.get(name, {})

    def kind(self, node: dict[str, Any]) -> str:
        """A readable type: `request` | `response`, duration, integer 200–599, ..."""
        name, target = self.resolve(node)
        if name is not None and target.get("type") == "object" and "properties" in target:
            self.nested[name] = target
            return f"[{name}](#{self.anchor(name)})"
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        if "const" in node:
            return f"`{node['const']}`"
        if "enum" in node:
            return " | ".join(f"`{v}`" for v in node["enum"])
        variants = node.get("anyOf") or node.get("oneOf")
        if variants:
            described = node.get("description", "")
            unit = re.match(r"an? (\w+): ", described)
            concrete = [v for v in variants if v.get("type") != "null"]
            if unit and all(v.get("type") in ("number", "string") for v in concrete):
                return unit.group(1)
            parts = [self.kind(v) for v in concrete]
            text = " or ".join(dict.fromkeys(p for p in parts if p))
            if node.get("discriminator"):
                text = f"one of {text} (by `{node['discriminator']['propertyName']}`)"
            return text
        kind = node.get("type")
        if kind == "array":
            return f"list of {self.kind(node.get('items', {}))}"
        if kind == "object" and isinstance(node.get("additionalProperties"), dict):
            return f"map of string to {self.kind(node['additionalProperties'])}"
        if kind is None:
            return "any JSON value"
        text = "text" if kind == "string" else str(kind)
        limits = _constraints(node)
        return f"{text} {', '.join(limits)}" if limits else text

    def description(self, node: dict[str, Any]) -> str:
        found = node.get("description")
        if found is None:
            name, target = self.resolve(node)
            if name is not None and "properties" not in target:
                found = target.get("description")
        if found is None:
            for variant in node.get("anyOf", []):
                found = variant.get("description")
                if found:
                    break
        return _rst_to_md(found or "")

    def anchor(self, name: str) -> str:
        return slug(f"{self.prefix}-{name}")

    def table(self, schema: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
        required = set(schema.get("required", []))
        rows = [
            "| parameter | type | default | description |",
            "|---|---|---|---|",
        ]
        for name, node in schema.get("properties", {}).items():
            if name in skip:
                continue
            if name in required:
                default = "required"
            elif "default" in node:
                default = _default(node["default"])
            else:
                default = "—"
            rows.append(
                f"| `{name}` | {_cell(self.kind(node))} | {_cell(default)} "
                f"| {_cell(self.description(node))} |"
            )
        return rows


def _default(value: Any) -> str:
    if value is None:
        return "none"
    if value == [] or value == {}:
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{_number(value)}`"


CAPABILITY_LABELS = {
    "stages": "acts in",
    "needs_body": "reads the whole answer",
    "streams_body": "streams the body",
    "passes_on": "sends the request on afterwards",
    "stateful": "keeps state across requests",
    "gates": "gates its rule",
}


def capabilities(cls: type) -> list[str]:
    """What the fault type declares about itself, as `name: value` items."""
    declared = getattr(cls, "capabilities", None)
    if callable(declared):
        record = declared()
        values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    else:  # before capabilities were one record: the class attributes that exist
        values = {name: getattr(cls, name) for name in CAPABILITY_LABELS if hasattr(cls, name)}
    items = []
    for name, value in values.items():
        label = CAPABILITY_LABELS.get(name, name.replace("_", " "))
        if isinstance(value, bool):
            items.append(f"{label}: {'yes' if value else 'no'}")
        elif isinstance(value, tuple | list):
            chosen = " (chosen by `on`)" if len(value) > 1 else ""
            items.append(f"{label}: " + " or ".join(f"`{v}`" for v in value) + chosen)
        else:
            items.append(f"{label}: `{value}`")
    return items


def render_fault(name: str, cls: type, note: str | None) -> str:
    schema = cls.model_json_schema(by_alias=True)  # type: ignore[attr-defined]
    renderer = Renderer(schema, name)
    lines = [f"## {name}", "", docstring(cls), ""]
    lines += renderer.table(schema, skip=("type",))
    lines.append("")
    caps = capabilities(cls)
    if caps:
        lines += ["Declared by the type: " + "; ".join(caps) + ".", ""]
    done: set[str] = set()
    while set(renderer.nested) - done:
        nested = next(n for n in renderer.nested if n not in done)
        done.add(nested)
        target = renderer.nested[nested]
        lines += [
            f"**{nested}**{{: #{renderer.anchor(nested)} }}: "
            + _rst_to_md(target.get("description", "")),
            "",
        ]
        lines += renderer.table(target)
        lines.append("")
    if note:
        lines += [note.strip(), ""]
    return "\n".join(lines)


def reference(docs_dir: Path) -> str:
    types = fault_types()
    notes_dir = docs_dir / NOTES_DIR
    notes = {p.stem: p.read_text(encoding="utf-8") for p in sorted(notes_dir.glob("*.md"))}
    for orphan in sorted(set(notes) - set(types)):
        log.warning("%s/%s.md describes no registered fault type", NOTES_DIR, orphan)
    summary = ["| type | what it does |", "|---|---|"]
    for name, cls in types.items():
        first = docstring(cls).split("\n\n")[0].replace("\n", " ")
        summary.append(f"| [`{name}`](#{slug(name)}) | {_cell(first)} |")
    sections = [render_fault(name, cls, notes.get(name)) for name, cls in types.items()]
    return "\n".join(summary) + "\n\n" + "\n".join(sections)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference(Path(config["docs_dir"])))
