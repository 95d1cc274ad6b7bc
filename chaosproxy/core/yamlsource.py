"""Safe YAML reading that remembers where every value came from.

Scenario files are plain YAML. Scalars resolve as YAML 1.2 does (``on``, ``yes`` and
``no`` stay strings; only ``true``/``false`` are booleans), values under ``match`` and
``headers`` keep their source text (``1.10`` stays ``"1.10"``), and any tag beyond the
plain ones is refused, so ``!!python/...`` is never constructed, let alone executed.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]

#: The largest scenario accepted, from a file or a ``PUT /scenario`` body (bytes).
MAX_BYTES = 1_000_000
#: The most rules a scenario may have (all phases together), and the most phases: far
#: beyond any real scenario, and small enough that loading one stays quick.
MAX_RULES = 1000
MAX_PHASES = 100

_PLAIN = "tag:chaosproxy,2024:plain"
_T = "tag:yaml.org,2002:"
_ALLOWED_EXPLICIT = {_T + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}
_MAX_NODES = 200_000
_MAX_DEPTH = 64
#: Keys under which scalars keep their source text: these values are strings to match.
_TEXT_KEYS = {"match", "headers"}

_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"^\.(nan|NaN|NAN)$")


class _Resolver(yaml.resolver.Resolver):
    """Tag untagged plain scalars with a marker, so we resolve them ourselves (YAML 1.2)."""

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return str(super().resolve(kind, value, implicit))


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.constructor.SafeConstructor,
    _Resolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # PyYAML composes recursively: past a few hundred levels it would raise
        # RecursionError, so refuse anything deeper than a scenario can be.
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


_DEEP = f"too deeply nested (more than {_MAX_DEPTH} levels)"


@dataclass(frozen=True)
class Problem:
    """One located problem; ``line``/``col`` are 1-based, None when unknown."""

    field: str
    message: str
    line: int | None = None
    col: int | None = None

    def format(self, source: str) -> str:
        where = source if self.line is None else f"{source}:{self.line}:{self.col}"
        return f"{where}: {self.field}: {self.message}"


class YamlSourceError(Exception):
    """The text is not YAML we accept; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


@dataclass
class Document:
    """Plain Python data plus the position of each value and each mapping key."""

    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[tuple[Path, Problem]] = field(default_factory=list)
    """Values that were refused while reading (bad tags, duplicate keys); they read as None."""

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int] | None:
        """The nearest known position for ``path`` (its key's, if ``key``)."""
        if key and path in self.keys:
            return self.keys[path]
        probe = path
        while True:
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return None
            probe = probe[:-1]


class FileRefused(Exception):
    """A scenario file that is not read: not a regular file, too large, unreadable."""


def read_text(path: str | os.PathLike[str], limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``limit`` bytes.

    Checked before anything is read, so nothing can make the reader wait or fill memory: a
    FIFO, a device or a directory is refused (opened without blocking, then ``fstat``), and
    so is a file over ``limit`` bytes (and one that grows past it while being read).
    Raises FileNotFoundError, or FileRefused with a message for the user.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileRefused(f"cannot read it: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(
                f"not a regular file ({_file_kind(st.st_mode)}): give a scenario file"
            )
        if st.st_size > limit:
            raise FileRefused(_too_large(st.st_size, limit))
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise FileRefused(_too_large(None, limit))
    except OSError as exc:
        raise FileRefused(f"cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefused(
            f"cannot read it: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


def _too_large(size: int | None, limit: int) -> str:
    got = f"{size:,} bytes" if size is not None else "more than that"
    return f"too large: {got}; a scenario is at most {limit:,} bytes"


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


def format_path(path: Path) -> str:
    """``("rules", 0, "fault", "status")`` -> ``rules[0].fault.status``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            out += f"[{str(part)!r}]"  # quoted: empty, spaces, dots, control characters
        else:
            out += f".{part}" if out else str(part)
    return out or "scenario"


_PLAIN_KEY = re.compile(r"^[^\s.\[\]:'\"\x00-\x1f\x7f]+$")


def _resolve_plain(text: str) -> Any:
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0

    def problem(self, node: Node, path: Path, message: str) -> None:
        mark = node.start_mark
        problem = Problem(format_path(path), message, mark.line + 1, mark.column + 1)
        self.doc.problems.append((path, problem))

    def build(self, node: Node, path: Path, depth: int, text: bool) -> Any:
        self.count += 1
        if self.count > _MAX_NODES or depth > _MAX_DEPTH:
            raise _TooBig(node)
        mark = node.start_mark
        self.doc.values[path] = (mark.line + 1, mark.column + 1)
        tag = node.tag
        if tag not in _ALLOWED_EXPLICIT and tag != _PLAIN:
            shown = tag.replace(_T, "!!")
            self.problem(node, path, f"unsupported YAML tag {shown}: scenario files are plain YAML")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path, text)
        if isinstance(node, SequenceNode):
            if tag != _T + "seq":
                self.problem(node, path, "a list cannot carry a scalar tag")
                return None
            return [
                self.build(item, (*path, i), depth + 1, text) for i, item in enumerate(node.value)
            ]
        assert isinstance(node, MappingNode)
        if tag != _T + "map":
            self.problem(node, path, "a mapping cannot carry a scalar tag")
            return None
        return self.mapping(node, path, depth, text)

    def scalar(self, node: ScalarNode, path: Path, text: bool) -> Any:
        raw = node.value
        tag = node.tag
        digits = _too_long(raw)
        if digits and not (text and tag == _PLAIN) and tag != _T + "str":
            self.problem(node, path, _long_number(digits))
            return None
        if tag == _PLAIN:
            value = _resolve_plain(raw)
            if text and value is not None and not isinstance(value, str):
                return raw
            return value
        if tag == _T + "str":
            return raw
        value = _resolve_plain(raw)
        expected: dict[str, tuple[type, ...]] = {
            _T + "int": (int,),
            _T + "float": (int, float),
            _T + "bool": (bool,),
            _T + "null": (type(None),),
        }
        if (isinstance(value, bool) and tag != _T + "bool") or not isinstance(value, expected[tag]):
            self.problem(node, path, f"{raw!r} is not a valid {tag.replace(_T, '!!')}")
            return None
        if tag == _T + "float":
            assert isinstance(value, int | float)
            return float(value)
        return value

    def mapping(self, node: MappingNode, path: Path, depth: int, text: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _T + "merge" or (
                isinstance(key_node, ScalarNode)
                and key_node.value == "<<"
                and key_node.style is None
            ):
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node, path, "mapping keys must be plain strings")
                continue
            key = key_node.value
            kmark = key_node.start_mark
            if key in first_seen:
                self.problem(
                    key_node,
                    (*path, key),
                    f"duplicate key {key!r} (first at line {first_seen[key]})",
                )
                continue
            first_seen[key] = kmark.line + 1
            self.doc.keys[(*path, key)] = (kmark.line + 1, kmark.column + 1)
            child_text = text or key in _TEXT_KEYS
            out[key] = self.build(value_node, (*path, key), depth + 1, child_text)
        for merge in merges:
            self.merge(merge, path, depth, text, out)
        return out

    def merge(self, node: Node, path: Path, depth: int, text: bool, out: dict[str, Any]) -> None:
        """Apply a ``<<: *anchor`` merge: keys the mapping sets itself win."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for src in sources:
            if not isinstance(src, MappingNode):
                self.problem(src, path, "'<<' merges mappings only")
                continue
            own, self.doc = self.doc, Document(None)
            try:
                built = self.mapping(src, path, depth + 1, text)
            finally:
                scratch, self.doc = self.doc, own
            n = len(path)
            for key, value in built.items():
                if key in out:
                    continue
                out[key] = value
                for table, own_table in ((scratch.values, own.values), (scratch.keys, own.keys)):
                    for p, pos in table.items():
                        if len(p) > n and p[n] == key:
                            own_table[p] = pos


class _TooBig(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


def parse(text: str) -> Document:
    """Parse one YAML (or JSON) document into data with positions.

    Syntax errors raise YamlSourceError; refused values (bad tags, duplicate keys) are
    kept in ``Document.problems`` so validation can report them with everything else.
    """
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:  # a control character, raised before any mark
        at = max(0, min(exc.position, len(text)))
        line, col = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        message = f"character {char} is not allowed in YAML (a control character)"
        raise YamlSourceError([Problem("syntax", message, line, col)]) from None
    except _TooDeep as deep:
        mark = deep.mark
        raise YamlSourceError(
            [Problem("scenario", _DEEP, mark.line + 1, mark.column + 1)]
        ) from None
    except yaml.MarkedYAMLError as exc:
        return _json_fallback(text, exc)
    except yaml.YAMLError as exc:
        raise YamlSourceError([Problem("syntax", str(exc))]) from None
    doc = Document(None)
    if node is None:
        raise YamlSourceError([Problem("scenario", "the document is empty", 1, 1)])
    builder = _Builder(doc)
    try:
        doc.data = builder.build(node, (), 0, False)
    except _TooBig as big:
        mark = big.node.start_mark
        raise YamlSourceError(
            [
                Problem(
                    "scenario",
                    f"too deeply nested or too many values (more than {_MAX_NODES} once "
                    "aliases are expanded)",
                    mark.line + 1,
                    mark.column + 1,
                )
            ]
        ) from None
    return doc


def _json_fallback(text: str, exc: yaml.MarkedYAMLError) -> Document:
    """JSON that YAML chokes on (tabs, say) is still welcome; else report the YAML error."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text, parse_int=_json_int)
        except RecursionError:
            raise YamlSourceError([Problem("scenario", _DEEP)]) from None
        except ValueError:
            pass
        else:
            doc = Document(data)
            doc.data = _long_numbers(data, (), doc)
            return doc
    mark = exc.problem_mark or exc.context_mark
    message = exc.problem or "invalid YAML"
    if exc.context:
        message = f"{exc.context}, {message}"
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    raise YamlSourceError([Problem("syntax", message, line, col)]) from None


#: Integers longer than this are refused: no scenario value needs them, and Python refuses
#: to convert more than 4300 digits (a ValueError deep inside the parser).
_MAX_DIGITS = 100


def _too_long(raw: str) -> int:
    """The number of digits of ``raw`` when it is an integer too long to take, else 0."""
    if len(raw) <= _MAX_DIGITS or not (_INT.match(raw) or _OCT.match(raw) or _HEX.match(raw)):
        return 0
    return len(raw.lstrip("+-"))


def _long_number(digits: int) -> str:
    return f"a number of {digits} digits is too long (at most {_MAX_DIGITS})"


class _LongInt:
    """Stands for an integer too long to convert, until it is reported with its path."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _json_int(raw: str) -> Any:
    digits = _too_long(raw)
    return _LongInt(digits) if digits else int(raw)


def _long_numbers(data: Any, path: Path, doc: Document) -> Any:
    """Replace each too-long integer of JSON data by None, reporting it at its path."""
    stack: list[tuple[Any, Path]] = [(data, path)]
    if isinstance(data, _LongInt):
        doc.problems.append((path, Problem(format_path(path), _long_number(data.digits))))
        return None
    while stack:
        node, where = stack.pop()
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, value in items:
            here = (*where, key)
            if isinstance(value, _LongInt):
                doc.problems.append((here, Problem(format_path(here), _long_number(value.digits))))
                node[key] = None
            elif isinstance(value, dict | list):
                stack.append((value, here))
    return data
