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


@dataclass(frozen=True)
class Verdict:
    item: str
    ok: bool
    message: str
