"""Random requests for the transparency suite: what to send, how, and what must arrive.

A :class:`Case` says everything about one exchange: the request as the client sends it
and the answer the upstream (:mod:`tests.reliability.mirror`) is asked to give. Each
transport sends cases its own way (raw HTTP/1.1 bytes, requests, httpx over HTTP/1.1 or
HTTP/2); :func:`check` compares both sides and lists every difference.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from tests.reliability.mirror import NO_BODY_STATUS, Received, payload
from tests.reliability.rawwire import Reader, parse_head

MB = 1024 * 1024
#: Headers HTTP lets a proxy change: hop-by-hop ones, message framing, and Host (reverse
#: mode rewrites it; HTTP/2 carries it as :authority).
EXEMPT = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
METHODS = [
    ("GET", 30),
    ("POST", 24),
    ("PUT", 10),
    ("PATCH", 8),
    ("DELETE", 8),
    ("HEAD", 7),
    ("OPTIONS", 5),
    ("REPORT", 4),
    ("PURGE", 4),
]
WITH_BODY = {"POST", "PUT", "PATCH", "REPORT"}
STATUSES = [200] * 30 + [201, 202, 204, 206, 301, 302, 304, 400, 404, 410, 418, 429, 500, 502, 503]
HEADER_NAMES = [
    "X-Trace-Id",
    "x-lower-case",
    "X-UPPER-CASE",
    "x-MiXeD-CaSe",
    "Accept-Language",
    "X-Empty-Ish",
    "X-Json",
    "Cache-Control",
    "X-Forwarded-For",
    "If-None-Match",
]
#: Characters a path or query keeps as they are in every client used here.
SAFE = string.ascii_letters + string.digits + "-._~!$'()*,;:@"
#: Bytes written percent-encoded: reserved and non-ASCII ones (clients leave these alone).
ENCODED = [b for b in range(256) if chr(b) not in string.ascii_letters + string.digits + "-._~"]
VALUE_CHARS = string.ascii_letters + string.digits + " !#$%&'()*+,-./:;<=>?@[]^_`{|}~\""


@dataclass
class Case:
    """One exchange: the request as sent and the answer the upstream is asked for."""

    id: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked_upload: bool
    status: int
    size: int
    seed: int
    chunked_download: bool
    answer_headers: list[tuple[str, str]]
    close: bool = False
    notes: list[str] = field(default_factory=list)

    def wire_headers(self) -> list[tuple[str, str]]:
        """The headers the client sends: the case's own, then the upstream's instructions."""
        return [
            *self.headers,
            ("X-T-Id", self.id),
            ("X-T-Status", str(self.status)),
            ("X-T-Size", str(self.size)),
            ("X-T-Seed", str(self.seed)),
            ("X-T-Chunked", "1" if self.chunked_download else "0"),
            ("X-T-Headers", json.dumps(self.answer_headers, separators=(",", ":"))),
        ]

    @property
    def answer_has_body(self) -> bool:
        return self.method != "HEAD" and self.status not in NO_BODY_STATUS

    @property
    def expected_sha256(self) -> str:
        return _sha(self.seed, self.size) if self.answer_has_body else _sha(0, 0)


@lru_cache(maxsize=4096)
def _sha(seed: int, size: int) -> str:
    return hashlib.sha256(payload(seed, size)).hexdigest()


def _size(rng: random.Random, huge: bool) -> int:
    if huge:
        return rng.choice([8 * MB, rng.randint(1 * MB, 8 * MB)])
    bucket = rng.random()
    if bucket < 0.15:
        return 0
    if bucket < 0.60:
        return rng.randint(1, 2048)
    if bucket < 0.90:
        return rng.randint(2049, 64 * 1024)
    return rng.randint(64 * 1024, 1 * MB)


def _segment_(rng: random.Random, lower_hex: bool = False) -> str:
    parts = []
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.25:
            byte = rng.choice(ENCODED)
            hexed = f"{byte:02x}" if lower_hex and rng.random() < 0.3 else f"{byte:02X}"
            parts.append(f"%{hexed}")
        else:
            parts.append(rng.choice(SAFE))
    text = "".join(parts)
    return text + "x" if set(text) == {"."} else text  # "." and ".." would be normalised


def _target(rng: random.Random, long_query: bool, lower_hex: bool) -> str:
    def _segment(rng: random.Random) -> str:
        return _segment_(rng, lower_hex)

    path = "/" + "/".join(_segment(rng) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.1:
        path += "/"
    if long_query:
        pairs = []
        while sum(len(p) for p in pairs) < rng.randint(2000, 8000):
            pairs.append(f"{_segment(rng)}={_segment(rng)}")
        return f"{path}?{'&'.join(pairs)}"
    if rng.random() < 0.4:
        pairs = [f"{_segment(rng)}={_segment(rng)}" for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.2:
            pairs.append(pairs[0])  # a repeated parameter
        return f"{path}?{'&'.join(pairs)}"
    return path


def _value(rng: random.Random) -> str:
    text = "".join(rng.choice(VALUE_CHARS) for _ in range(rng.randint(1, 120)))
    return text.strip() or "x"


def _headers(rng: random.Random, repeats: bool, count: int) -> list[tuple[str, str]]:
    names = rng.sample(HEADER_NAMES, count)
    out = [(name, _value(rng)) for name in names]
    if repeats and out:
        name = rng.choice(out)[0]
        cased = name if rng.random() < 0.5 else name.swapcase()
        out.insert(rng.randrange(len(out) + 1), (cased, _value(rng)))
    return out


def generate(
    count: int,
    seed: int,
    *,
    repeats: bool = True,
    raw: bool = False,
    huge_every: int = 400,
    prefix: str = "c",
) -> list[Case]:
    """``count`` cases from ``seed``; one upload and one download in ``huge_every`` are
    1-8 MB. ``repeats``: the transport can send a header name twice; ``raw``: it sends the
    target exactly as written (client libraries upper-case percent escapes)."""
    rng = random.Random(seed)
    methods, weights = zip(*METHODS, strict=True)
    cases = []
    for i in range(count):
        method = rng.choices(methods, weights)[0]
        huge_up = i % huge_every == huge_every // 4 and method in WITH_BODY
        huge_down = i % huge_every == (3 * huge_every) // 4
        has_body = method in WITH_BODY or (method == "DELETE" and rng.random() < 0.3)
        body = payload(rng.getrandbits(32), _size(rng, huge_up)) if has_body else b""
        status = rng.choice(STATUSES)
        if huge_down:
            status = 200
        answer = _headers(rng, repeats, rng.randint(0, 4))
        if rng.random() < 0.3:
            answer += [("Set-Cookie", f"a={_segment_(rng)}; Path=/"), ("set-cookie", "b=2")]
        cases.append(
            Case(
                id=f"{prefix}{i}",
                method=method,
                target=_target(rng, rng.random() < 0.05, lower_hex=raw),
                headers=_headers(rng, repeats and rng.random() < 0.3, rng.randint(0, 6)),
                body=body,
                chunked_upload=bool(body) and rng.random() < 0.3,
                status=status,
                size=_size(rng, huge_down),
                seed=rng.getrandbits(32),
                chunked_download=rng.random() < 0.3,
                answer_headers=answer,
                close=rng.random() < 0.05,
            )
        )
    return cases


# --------------------------------------------------------------------------- answers


@dataclass
class Answer:
    """What the client got back."""

    status: int
    headers: list[tuple[str, str]]
    body_sha256: str


def _filtered(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in EXEMPT]


def check(
    case: Case,
    got: Received | None,
    answer: Answer | BaseException,
    *,
    exact_headers: bool,
    host: str | None = None,
) -> list[str]:
    """Every difference between what was sent and what arrived, on both sides.

    ``exact_headers``: the client sent exactly the case's headers (raw HTTP/1.1), so the
    upstream must see that very list, same case, same order; otherwise (a client library
    adds its own) each of the case's headers must arrive with all its values in order,
    names compared without case when the client speaks HTTP/2. ``host``: the Host the
    upstream must see (forward mode keeps it)."""
    problems: list[str] = []

    def bad(text: str) -> None:
        problems.append(f"{case.id} {case.method} {case.target[:60]}: {text}")

    if isinstance(answer, BaseException):
        bad(f"client error {type(answer).__name__}: {answer}")
        return problems
    if got is None:
        bad("never reached the upstream")
        return problems
    if got.method != case.method:
        bad(f"upstream got method {got.method}")
    if got.target != case.target:
        bad(f"upstream got target {got.target[:80]!r}")
    if (
        got.body_length != len(case.body)
        or got.body_sha256 != hashlib.sha256(case.body).hexdigest()
    ):
        bad(f"upstream got a different body ({got.body_length} of {len(case.body)} bytes)")
    sent = _filtered(case.wire_headers())
    if exact_headers:
        if _filtered(got.headers) != sent:
            bad(f"upstream headers differ: {_filtered(got.headers)} != {sent}")
    else:
        for name in {k.lower() for k, _ in sent}:
            want = [v for k, v in sent if k.lower() == name]
            if got.get_all(name) != want:
                bad(f"upstream header {name}: {got.get_all(name)} != {want}")
    if host is not None and got.get_all("host") != [host]:
        bad(f"upstream Host {got.get_all('host')} != {host}")
    if answer.status != case.status:
        bad(f"client got status {answer.status}, upstream sent {case.status}")
    expected_answer = _filtered(case.answer_headers)
    if exact_headers:
        if _filtered(answer.headers) != expected_answer:
            bad(f"client headers differ: {_filtered(answer.headers)} != {expected_answer}")
    else:
        lowered = [(k.lower(), v) for k, v in _filtered(answer.headers)]
        for name in {k.lower() for k, _ in expected_answer}:
            want = [v for k, v in expected_answer if k.lower() == name]
            have = [v for k, v in lowered if k == name]
            if have != want:
                bad(f"client header {name}: {have} != {want}")
    if answer.body_sha256 != case.expected_sha256:
        bad("client got a different body")
    return problems


# --------------------------------------------------------------------------- transports


def _chunks(body: bytes, rng: random.Random) -> Iterator[bytes]:
    at = 0
    while at < len(body):
        n = rng.randint(1, 100_000)
        yield body[at : at + n]
        at += n


class RawClient:
    """HTTP/1.1 written byte by byte over one keep-alive connection (reconnects on close)."""

    def __init__(self, port: int, authority: str = "upstream.test") -> None:
        self.port = port
        self.authority = authority
        self.sock: socket.socket | None = None
        self.reader: Reader | None = None
        self.connections = 0

    def _connect(self) -> tuple[socket.socket, Reader]:
        if self.sock is None or self.reader is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reader = Reader(self.sock)
            self.connections += 1
        return self.sock, self.reader

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    def send(self, case: Case) -> Answer:
        sock, reader = self._connect()
        rng = random.Random(case.seed)
        head = [f"{case.method} {case.target} HTTP/1.1", f"Host: {self.authority}"]
        head += [f"{k}: {v}" for k, v in case.wire_headers()]
        if case.chunked_upload:
            head.append("Transfer-Encoding: chunked")
        elif case.body or case.method in WITH_BODY:
            head.append(f"Content-Length: {len(case.body)}")
        if case.close:
            head.append("Connection: close")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if case.chunked_upload:
            for piece in _chunks(case.body, rng):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        elif case.body:
            sock.sendall(case.body)
        raw = reader.head()
        if raw is None:
            raise ConnectionError("the proxy closed the connection without an answer")
        start, fields = parse_head(raw)
        status = int(start[1])
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in fields]
        lower = {k.lower(): v for k, v in headers}
        if case.method == "HEAD" or status in NO_BODY_STATUS:
            body = b""
        elif "chunked" in lower.get("transfer-encoding", "").lower():
            body = reader.chunked()
        elif "content-length" in lower:
            body = reader.exactly(int(lower["content-length"]))
        else:
            body = reader.to_close()
        if case.close or lower.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, headers, hashlib.sha256(body).hexdigest())


def run_all(cases: list[Case], send: Callable[[Case], Answer]) -> dict[str, Answer | BaseException]:
    """Send each case in turn; an exception is kept as that case's answer."""
    out: dict[str, Answer | BaseException] = {}
    for case in cases:
        try:
            out[case.id] = send(case)
        except Exception as exc:  # noqa: BLE001 - reported per case by check()
            out[case.id] = exc
    return out
