"""Log output for ``chaosproxy run``: readable lines or JSON lines, our records and
mitmproxy's warnings, never a traceback for an expected problem."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO


class TextFormatter(logging.Formatter):
    """``12:00:01.234 message`` (``WARNING:`` and the logger's name for others' warnings)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            source = "" if record.name.startswith("chaosproxy") else f"[{record.name}] "
            text = f"{record.levelname}: {source}{text}"
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return f"{stamp}.{int(record.msecs):03d} {text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601), level, logger, message, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "chaos", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class _Levels(logging.Filter):
    """chaosproxy's own records from ``ours`` up; everyone else's from WARNING up."""

    def __init__(self, ours: int) -> None:
        super().__init__()
        self.ours = ours

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("chaosproxy"):
            return record.levelno >= self.ours
        return record.levelno >= logging.WARNING


def configure(fmt: str = "text", *, quiet: bool = False, stream: TextIO | None = None) -> None:
    """Send logs to ``stream`` (stderr) in ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Levels(logging.WARNING if quiet else logging.INFO))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_chaosproxy", False):
            root.removeHandler(old)
    handler._chaosproxy = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Others' INFO records are never even created: mitmproxy logs every connection at INFO.
    root.setLevel(logging.WARNING)
    logging.getLogger("chaosproxy").setLevel(logging.WARNING if quiet else logging.INFO)
