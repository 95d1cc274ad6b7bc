"""The code examples of the README and the manual (docs/**/*.md), read as a user reads them.

A fenced block whose first line names a file (``# conftest.py``, ``# broken.yaml``,
``// proxied-fetch.mjs``) is that file, whole. ``console`` blocks are sessions: a line
``$ COMMAND`` and, below it, the output it prints (``...`` standing for any text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<text>.*?)^```\s*$", re.S | re.M)
_NAME = re.compile(r"(?:#|//) ([\w.-]+\.(?:py|yaml|mjs|js))\s*")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str

    @property
    def name(self) -> str | None:
        """The file this block is, when its first line names one."""
        first = self.text.split("\n", 1)[0]
        found = _NAME.fullmatch(first)
        return found.group(1) if found else None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and every Markdown page of the manual (hand-written fault notes too)."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(page, text.count("\n", 0, m.start()) + 1, m.group("lang"), m.group("text"))
        for m in _FENCE.finditer(text)
    ]


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def named_files(page: Path) -> dict[str, str]:
    """The page's blocks that name a file, by file name (a name given twice is an error)."""
    files: dict[str, str] = {}
    for block in blocks(page):
        name = block.name
        if name is not None:
            assert name not in files, f"{block}: {name} is shown twice on this page"
            files[name] = block.text
    return files


@dataclass(frozen=True)
class Session:
    block: Block
    command: str
    expected: list[str]

    def pattern(self, line: str) -> re.Pattern[str]:
        return re.compile(".*".join(re.escape(part) for part in line.split("...")))

    def mismatch(self, output: str) -> str | None:
        """Why ``output`` is not what the page shows, or None when it is."""
        got = output.rstrip("\n").split("\n")
        if len(got) != len(self.expected):
            return f"{len(got)} lines, the page shows {len(self.expected)}"
        for want, line in zip(self.expected, got, strict=True):
            if not self.pattern(want).fullmatch(line):
                return f"the page shows\n  {want}\nthe command printed\n  {line}"
        return None


def sessions(block: Block) -> list[Session]:
    """The ``$ COMMAND`` lines of a console block, each with the output shown below it."""
    found: list[Session] = []
    for line in block.text.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            command = re.sub(r"\s+#.*$", "", line[2:]).strip()
            found.append(Session(block, command, []))
        elif found:
            found[-1].expected.append(line)
    return found
