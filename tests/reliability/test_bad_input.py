"""Bad input: arbitrary scenario text and data, absurd values, malformed HTTP both ways."""

from __future__ import annotations

import enum
import json
import re
import socket
import time
import typing
from collections.abc import Iterator

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.fault import fault_types
from chaosproxy.core.scenario import Scenario, ScenarioError, load_data, load_text, shipped
from chaosproxy.testing.api import ChaosProxy
from tests.reliability.census import census, settled
from tests.reliability.rawwire import RawUpstream, connect, read_head
from tests.support import wait_until

#: ``PATH:LINE:COL: field: message`` or, without a position, ``PATH: field: message``.
LOCATED = re.compile(r"^x\.yaml(:\d+:\d+)?: (\S+|\S*\[.*\]\S*): .+$")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")
FUZZ = settings(
    derandomize=True,  # the same examples on every run
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ----------------------------------------------------------------- the loader, fuzzed


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """``root`` and every model its fields nest, however deep."""
    found: list[type[BaseModel]] = []
    stack = [root]
    while stack:
        model = stack.pop()
        if model in found:
            continue
        found.append(model)
        for info in model.model_fields.values():
            annotations = [info.annotation]
            while annotations:
                ann = annotations.pop()
                if isinstance(ann, type) and issubclass(ann, BaseModel):
                    stack.append(ann)
                else:
                    annotations.extend(typing.get_args(ann))
    return found


def _literals(model: type[BaseModel]) -> set[str]:
    """The values of the Literal and Enum types in ``model``'s fields (fault types, modes...)."""
    out: set[str] = set()
    for info in model.model_fields.values():
        annotations = [info.annotation]
        while annotations:
            ann = annotations.pop()
            if typing.get_origin(ann) is typing.Literal:
                out.update(str(v) for v in typing.get_args(ann))
            elif isinstance(ann, type) and issubclass(ann, enum.Enum):
                out.update(str(member.value) for member in ann)
            else:
                annotations.extend(typing.get_args(ann))
    return out


#: Every model a scenario is made of: the scenario's own and every registered fault type's,
#: so a new fault or key is fuzzed without editing a list.
MODELS = list(
    dict.fromkeys(_models(Scenario) + [m for cls in fault_types().values() for m in _models(cls)])
)
KEYS = sorted({info.alias or name for m in MODELS for name, info in m.model_fields.items()})
WORDS = sorted({word for m in MODELS for word in _literals(m)}) + [
    "300ms", "10h", "1e400", "-1", "0", "10KB/s", "0GB/s", "re:(a+)+$", "re:[", "re:\\p{L}",
    "/v1/*", "GET", "header:X-Key", "query:user", "504", "yes", "on", "~", "", "\x00", "é",
    "*", "X-Key", "X Bad", "a\r\nb",
]  # fmt: skip


def test_the_fuzzed_keys_and_words_come_from_the_models() -> None:
    assert set(fault_types()) <= set(WORDS)
    assert {"set", "remove", "per_request", "sticky", "phases", "distribution"} <= set(KEYS)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=6),
    ),
    max_leaves=40,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


def _loaded_or_located(load) -> Scenario | None:
    """Run a load: a Scenario, or a ScenarioError whose every line is located; nothing else."""
    try:
        scenario = load()
    except ScenarioError as exc:
        assert exc.lines, "an error without problems"
        for line in exc.lines:
            first = line.split("\n")[0]
            assert LOCATED.match(first), first
            assert not CONTROL.search(line), f"unescaped control character in {line!r}"
        return None
    assert isinstance(scenario, Scenario)
    engine = Engine(scenario, seed=1)  # what validates must also run
    for method, path, upstream in (("GET", "/v1/forecast/berlin", None), ("POST", "/", "api")):
        request = SimpleRequest(
            method,
            "weather.test",
            path,
            [("X-Key", "k"), ("X-User-Id", "u1")],
            [("a", "1"), ("user", "u1")],
            b'{"a": 1}',
            upstream=upstream,  # a named upstream (--upstream NAME=URL): host matches NAME
        )
        engine.decide(request)
        engine.explain(request)
    engine.tick()
    engine.stats()
    return scenario


@FUZZ
@given(st.text(max_size=400))
def test_any_text_loads_or_is_refused_with_located_problems(text: str) -> None:
    _loaded_or_located(lambda: load_text(text, "x.yaml"))


@FUZZ
@given(documents)
def test_any_yaml_document_loads_or_is_refused(doc: dict) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    _loaded_or_located(lambda: load_text(text, "x.yaml"))


@FUZZ
@given(documents)
def test_any_json_document_or_data_loads_or_is_refused(doc: dict) -> None:
    _loaded_or_located(lambda: load_text(json.dumps(doc), "x.yaml"))
    _loaded_or_located(lambda: load_data(doc, "x.yaml"))


SHIPPED = [s.path.read_text() for s in shipped()]


@FUZZ
@given(
    st.sampled_from(SHIPPED),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.text(max_size=6)), max_size=4),
)
def test_shipped_scenarios_with_random_edits_load_or_are_refused(text: str, edits: list) -> None:
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut :]
    _loaded_or_located(lambda: load_text(text, "x.yaml"))


# ----------------------------------------------------------------- absurd values

ABSURD = [
    ("{type: latency, delay: 10h}", "rules[0].fault: delay of 10h is longer than 10m; set allow_long: true if you mean it"),
    ("{type: timeout, after: 2h}", "rules[0].fault: after of 2h is longer than 10m; set allow_long: true"),
    ("{type: latency, distribution: {kind: lognormal, median: 1s, p99: 1h}}", "longer than 10m; set allow_long: true"),
    ("{type: latency, delay: 200h, allow_long: true}", "rules[0].fault.delay: 200h is longer than 168h (a week)"),
    ("{type: throttle, rate: 0GB/s}", "rules[0].fault: rate must be above 0"),
    ("{type: throttle, rate: 0.0001KB/s}", "rules[0].fault: a rate of 0.1 bytes/s is below 1 byte/s (a 10 KB body would take 27.8 hours); set allow_long: true"),
    ("{type: throttle, chunk: 1KB, interval: 2h}", "rules[0].fault: interval of 2h is longer than 10m"),
    ("{type: throttle, rate: 1GB/s, first_byte: 1h}", "rules[0].fault: first_byte of 1h is longer than 10m"),
    ("{type: rate_limit, limit: 1, per: 1e300}", "rules[0].fault.per: 2.77778e+296h is longer than 168h (a week)"),
    ("{type: malformed, mode: truncate, keep: .nan}", "rules[0].fault.keep: must be between 0 and 1, got NaN"),
]  # fmt: skip


@pytest.mark.parametrize("fault, message", ABSURD)
def test_absurd_fault_values_are_refused_with_a_message(fault: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_text(f"rules:\n  - fault: {fault}\n", "x.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("x.yaml:2:")


@pytest.mark.parametrize(
    "text, message",
    [
        ("rules: [{probability: .nan, fault: {type: error}}]", "rules[0].probability: must be between 0 and 1, got NaN"),
        ("ttl: 1e300\n", "ttl: 2.77778e+296h is longer than 168h (a week)"),
        ("phases: [{name: a, duration: 9999h}, {name: b}]", "phases[0].duration: 9999h is longer than 168h"),
        ('rules: [{match: {path: "re:(?=a)(a|aa){1,100}$"}, fault: {type: error}}]', "rules[0].match.path: regular expression '(?=a)(a|aa){1,100}$': uses a lookahead or lookbehind"),
        ('rules: [{match: {headers: {X-A: "re:^(\\\\w+)\\\\1$"}}, fault: {type: error}}]', "uses a backreference"),
        ('rules: [{match: {body: "re:(?>a|ab)*c"}, fault: {type: error}}]', "uses an atomic group"),
    ],
)  # fmt: skip
def test_absurd_scenario_values_are_refused(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_text(text, "x.yaml")
    assert message in str(err.value)


@pytest.mark.parametrize(
    "pattern",
    [
        "re:^/v1/(forecast|alerts)/",
        "re:^/v1/.*$",
        "re:([^/]+/)*items$",
        "re:(a+)+$",  # backtracks exponentially in Python's re; linear in RE2
        "re:a{2,5}",
    ],
)
def test_ordinary_regexes_and_those_python_would_backtrack_on_are_kept(pattern: str) -> None:
    load_text(json.dumps({"rules": [{"match": {"path": pattern}, "fault": {"type": "error"}}]}))


def test_a_pattern_that_would_hang_python_re_matches_at_once() -> None:
    rx = re.compile("(a+)+$")
    start = time.perf_counter()
    rx.search("a" * 22 + "!")
    assert time.perf_counter() - start > 0.05  # exponential: 2**22 steps for 23 characters
    engine = Engine(load_text('rules: [{match: {path: "re:(a+)+$"}, fault: {type: error}}]'))
    start = time.perf_counter()
    assert engine.decide(SimpleRequest("GET", "h", "/" + "a" * 22 + "!")) is None
    assert time.perf_counter() - start < 0.05  # RE2: linear in the text


# ----------------------------------------------------------------- malformed HTTP

CLIENT_GARBAGE = {
    "bad request line": b"GARBAGE\r\n\r\n",
    "bad header name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    "bad content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "negative content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "content-length and chunked": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
    "unknown version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "oversize header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n",
    "20,000 headers": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(20_000)) + b"\r\n",
    "TLS to a plain port": bytes.fromhex("160301002a010000260303") + bytes(32) + bytes.fromhex("0002002f0100"),
    "NUL bytes": b"\x00" * 100,
    "half a request": b"GET /echo HTTP/1.1\r\nHo",
}  # fmt: skip


def _answer(sock: socket.socket) -> bytes:
    """Whatever comes back until the proxy closes (or 10 s pass: a hang)."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_malformed_requests_get_an_error_or_a_close_and_the_proxy_serves_on(make_proxy) -> None:
    proxy = make_proxy(
        {"seed": 1, "rules": [{"match": {"path": "/x"}, "fault": {"type": "error"}}]}
    )
    requests.get(f"{proxy.url}/echo", timeout=10)
    baseline = census(proxy)
    for name, raw in CLIENT_GARBAGE.items():
        with connect(proxy.port) as sock:
            start = time.monotonic()
            sock.sendall(raw)
            if not raw.startswith(b"\x16"):
                # mitmproxy 12 leaves a client that half-closes after a broken ClientHello
                # open (mitmproxy 11 closes it); a real TLS client never half-closes there
                sock.shutdown(socket.SHUT_WR)
            data = _answer(sock)
            assert time.monotonic() - start < 10, name
        status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/1.1 ") else b""
        assert data == b"" or status[:1] in (b"4", b"5"), (name, data[:100])
        # the proxy is still there, and still injects
        assert requests.get(f"{proxy.url}/echo", timeout=10).status_code == 200, name
        assert requests.get(f"{proxy.url}/x", timeout=10).status_code == 500, name
    assert b"400 Bad Request" in _bad_line(proxy.port)  # mitmproxy's own error answer
    wait_until(lambda: settled(proxy, baseline), timeout=15)


def _bad_line(port: int) -> bytes:
    with connect(port) as sock:
        sock.sendall(CLIENT_GARBAGE["bad request line"])
        return _answer(sock)


UPSTREAM_GARBAGE = {
    "bad-status-line": (b"HTTP/1.1 OK\r\n\r\n", 502),
    "garbage": (b"\x00\x01garbage\r\n\r\n", 502),
    "no-head-at-all": (b"hello world", 502),
    "bad-content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nxyz", 502),
    "two-content-lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nxyz", 502),
    "bad-header-name": (b"HTTP/1.1 200 OK\r\nBad Name: y\r\nContent-Length: 2\r\n\r\nok", 502),
    "bad-chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", "cut"),
    "close-mid-head": (b"HTTP/1.1 200 OK\r\nContent-Le", 502),
}  # fmt: skip


def test_malformed_answers_from_the_upstream_give_502_and_the_proxy_serves_on(make_proxy) -> None:
    def upstream(conn: socket.socket) -> None:
        head, _ = read_head(conn)
        name = head.split(b" ")[1].decode().strip("/")
        if name in UPSTREAM_GARBAGE:
            conn.sendall(UPSTREAM_GARBAGE[name][0])
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with RawUpstream(upstream) as up:
        proxy = make_proxy(
            {"seed": 1, "rules": [{"match": {"path": "/never"}, "fault": {"type": "error"}}]},
            upstream=up.url,
        )
        for name, (_, expected) in UPSTREAM_GARBAGE.items():
            try:
                got: int | str = requests.get(f"{proxy.url}/{name}", timeout=10).status_code
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
                got = "cut"  # the head had gone out: the body streamed
            assert got == expected, name
            assert requests.get(f"{proxy.url}/fine", timeout=10).text == "ok", name
        assert not up.errors
        wait_until(lambda: proxy.addon.in_flight == 0)


# ----------------------------------------------------------------- the control API, fuzzed

BASE = {
    "name": "base",
    "seed": 9,
    "rules": [
        {"name": "down", "match": {"path": "/down"}, "fault": {"type": "error", "status": 503}}
    ],
}
bodies = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    documents.map(lambda d: json.dumps(d)),
    documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
)


@pytest.fixture(scope="module")
def controlled(upstream) -> Iterator[ChaosProxy]:
    proxy = ChaosProxy(upstream=upstream.url, scenario=BASE, admin=True).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@FUZZ
@given(body=bodies)
def test_an_invalid_put_never_changes_the_running_scenario(controlled: ChaosProxy, body) -> None:
    url = f"{controlled.admin_url}/scenario"
    session = requests.Session()
    before = session.get(url, timeout=10).json()
    data = body.encode() if isinstance(body, str) else body
    r = session.put(url, data=data, timeout=10)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    if r.status_code == 400:
        assert session.get(url, timeout=10).json() == before
        assert r.json()["problems"], r.text
        for line in r.json()["problems"]:
            assert not CONTROL.search(line), line
        assert requests.get(f"{controlled.url}/down", timeout=10).status_code == 503
    else:  # some random documents are valid (an empty one is a passthrough scenario)
        assert session.put(url, json=BASE, timeout=10).status_code == 200


@FUZZ
@given(
    path=st.sampled_from(["/scenario/phase", "/explain", "/pause", "/reset", "/scenario"]),
    body=bodies,
)
def test_any_body_to_any_control_call_never_breaks_the_proxy(
    controlled: ChaosProxy, path: str, body
) -> None:
    data = body.encode() if isinstance(body, str) else body
    method = "PUT" if path == "/scenario" else "POST"
    r = requests.request(method, f"{controlled.admin_url}{path}", data=data, timeout=10)
    assert r.status_code < 500, (path, r.status_code, r.text[:300])
    requests.post(f"{controlled.admin_url}/resume", timeout=10)
    if r.status_code == 200 and path == "/scenario":
        assert (
            requests.put(f"{controlled.admin_url}/scenario", json=BASE, timeout=10).status_code
            == 200
        )
    assert requests.get(f"{controlled.admin_url}/healthz", timeout=10).status_code == 200


def test_an_oversize_put_is_refused_and_changes_nothing(controlled: ChaosProxy) -> None:
    url = f"{controlled.admin_url}/scenario"
    before = requests.get(url, timeout=10).json()
    r = requests.put(url, data=b"rules: []\n" + b"#" * 2_000_000, timeout=30)
    assert r.status_code == 413
    assert requests.get(url, timeout=10).json() == before
