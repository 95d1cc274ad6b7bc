"""What the report tests share: the sample document and a verdict of an ``--expect`` gate."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"


def sample_document() -> dict[str, Any]:
    """A realistic assessment of the demo app (schema_version 1), a fresh copy each call."""
    doc: dict[str, Any] = json.loads((DATA / "sample-assessment.json").read_text())
    return copy.deepcopy(doc)


def demo_document() -> dict[str, Any]:
    """A real assessment: ``chaosproxy assess`` (full battery, seed 1) of the demo app with
    its default settings (3 attempts, 2 s read timeout, breaker 5 failures / 10 s)."""
    doc: dict[str, Any] = json.loads((DATA / "demo-assessment.json").read_text())
    return doc


@dataclass(frozen=True)
class Verdict:
    item: str
    ok: bool
    message: str
