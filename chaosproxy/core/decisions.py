"""The decision log: one record per request the proxy saw, what was decided and what came of it.

The addon records every request when it is over, faulted or not (``rule`` is None for a
request no rule fired for). Records go into a bounded ring (the newest
:data:`RING_SIZE`), served at ``GET /decisions``, read by ``ChaosProxy.decisions`` and
passed to listeners (metrics, the ``--decision-log`` file, the pytest plugin's oracle).
No mitmproxy import: the addon builds the records.
"""

from __future__ import annotations

import email.utils
import hashlib
import itertools
import json
import logging
import operator
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger("chaosproxy")

RING_SIZE = 1000

#: What the client got. ``response``: an HTTP answer (``status`` says which);
#: ``truncated``: a status and headers, then only part of the promised body; ``reset``:
#: a TCP reset (HTTP/2: the stream reset); ``closed``: the connection closed with no (or
#: an incomplete) answer; ``client_disconnected``: the client gave up first (a hold or a
#: delay it did not wait for, an upstream slow to answer, or mid-upload); ``error``: the
#: proxy could not complete the exchange (``error`` says why, e.g. the upstream refused
#: the connection); ``tls_failed``: ``tls_failure`` ended the client's TLS handshake with
#: an alert or presented it a bad certificate. A connect-time fault's record is of the
#: CONNECT (``method`` CONNECT, ``url`` HOST:PORT) or, in reverse mode, of the handshake
#: (``method`` TLS, ``path`` empty).
OUTCOMES = (
    "response",
    "truncated",
    "reset",
    "closed",
    "client_disconnected",
    "error",
    "tls_failed",
)

IDEMPOTENCY_HEADER = "idempotency-key"


def request_key(method: str, url: str, body: bytes, idempotency_key: str | None = None) -> str:
    """Identity of a request, equal for its retries: ``idem:<Idempotency-Key>`` when the
    client sent that header, else ``sha256:<16 hex>`` of method, URL and body."""
    if idempotency_key:
        return f"idem:{idempotency_key}"
    digest = hashlib.sha256()
    digest.update(method.upper().encode())
    digest.update(b"\0")
    digest.update(url.encode())
    digest.update(b"\0")
    digest.update(body)
    return f"sha256:{digest.hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One request as the proxy handled it."""

    seq: int
    """Position in this proxy's log, from 1 (survives the ring's bound: use it to page)."""
    time: float
    """Wall-clock time (seconds since the epoch) the request arrived at the proxy."""
    monotonic: float
    """``time.monotonic()`` at arrival: for intervals (retry backoff) immune to clock steps."""
    duration: float
    """Seconds from arrival until the outcome was settled."""
    method: str
    url: str
    host: str
    path: str
    request_key: str
    """See :func:`request_key`: retries of one request share it."""
    rule: str | None
    """The rule that fired; None: passed through untouched."""
    faults: tuple[str, ...]
    """Fault types of that rule, in order (``("latency", "error")``)."""
    fault: str | None
    """Human summary of the faults (``latency 300ms + error 502``), as in stats and logs."""
    phase: str | None
    outcome: str
    """One of :data:`OUTCOMES`."""
    status: int | None
    """HTTP status the client received, when it received one."""
    upstream_status: int | None
    """Status the upstream answered with; None when it was not called or did not answer."""
    added_latency: float = 0.0
    """Seconds the proxy held the request or its answer on purpose (latency, timeout)."""
    error: str | None = None
    flow_id: str = ""
    retry_after: float | None = None
    """Seconds the answer's Retry-After header asked the client to wait, if it had one."""
    stream: dict[str, Any] | None = None
    """Stream faults: how far the body got (``events``, ``bytes``), whether the fault's
    point was ``reached``, and how the body ``end``-ed there (None: let through)."""
    grpc_status: int | None = None
    """The gRPC status the client received (``grpc-status`` of the answer's headers or
    trailers: 14 is UNAVAILABLE), for a gRPC call that was answered."""
    websocket: dict[str, Any] | None = None
    """A WebSocket a ws_* rule fired for (recorded when it ends): per direction
    (``client``, ``server``) the messages ``seen``, ``dropped``, ``delayed`` and
    ``corrupted``; ``close_code`` and ``closed_by`` (``proxy``, ``client``, ``server``)."""

    @property
    def injected(self) -> bool:
        return self.rule is not None

    def to_dict(self) -> dict[str, Any]:
        # every field is a plain value: no need for asdict's deep copy
        doc = {name: getattr(self, name) for name in self.__dataclass_fields__}
        doc["faults"] = list(self.faults)
        return doc

    def to_json(self) -> str:
        """One line of JSON (the ``--decision-log`` format, and an item of ``/decisions``)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DecisionRecord:
        """The inverse of :meth:`to_dict` (for clients reading ``/decisions`` or a log file)."""
        fields = {name: doc[name] for name in cls.__dataclass_fields__ if name in doc}
        fields["faults"] = tuple(fields.get("faults") or ())
        return cls(**fields)


#: A record's values in field order, as a plain tuple (cheap to pickle: ``--workers``
#: forwards every record to its coordinator); :func:`record_from_values` is the inverse.
record_values: Callable[[DecisionRecord], tuple[Any, ...]] = operator.attrgetter(
    *DecisionRecord.__dataclass_fields__
)


def record_from_values(values: tuple[Any, ...], seq: int | None = None) -> DecisionRecord:
    """The record :func:`record_values` gave ``values`` for; ``seq`` replaces its seq."""
    if seq is None:
        return DecisionRecord(*values)
    return DecisionRecord(seq, *values[1:])


Listener = Callable[[DecisionRecord], object]


class DecisionLog:
    """A bounded ring of recent records with listeners. Thread-safe.

    ``add`` runs on the proxy's event loop; listeners are called there, synchronously, so
    they must be quick (a slow one slows the proxy). A listener that raises is logged and
    stays subscribed: its error is not the request's problem.
    """

    def __init__(self, size: int = RING_SIZE) -> None:
        self._ring: deque[DecisionRecord] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._seq = itertools.count(1)
        self.total = 0

    def next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def add(self, record: DecisionRecord) -> None:
        with self._lock:
            self._ring.append(record)
            self.total += 1
            listeners = tuple(self._listeners)
        for listener in listeners:
            try:
                listener(record)
            except Exception:
                logger.exception("decision listener %r failed", listener)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each new record; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def records(self, since: int = 0, limit: int | None = None) -> list[DecisionRecord]:
        """Records with ``seq > since``, oldest first; the newest ``limit`` of them if given."""
        with self._lock:
            out = [r for r in self._ring if r.seq > since] if since else list(self._ring)
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out

    def clear(self) -> None:
        with self._lock:
            self._ring.clear()

    def __len__(self) -> int:
        return len(self._ring)


class JsonLinesWriter:
    """A listener writing each record as a JSON line to ``path`` (appending), for CI artifacts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO | None = self.path.open("a", encoding="utf-8", buffering=1)

    def __call__(self, record: DecisionRecord) -> None:
        if self._file is not None:
            self._file.write(record.to_json() + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: delta-seconds, or an HTTP date relative to ``now``."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def read_json_lines(lines: Iterable[str]) -> list[DecisionRecord]:
    """Records from ``--decision-log`` lines (blank lines skipped)."""
    return [DecisionRecord.from_dict(json.loads(line)) for line in lines if line.strip()]
