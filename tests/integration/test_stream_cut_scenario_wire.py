"""The shipped ``stream-cut`` scenario does what its description says, on the wire.

Its description: token streams (SSE) break mid-way: a third are reset after 5 events, a
third stall for 2 s after 2 events and then go on, the rest start 800 ms late; a client
must tell a broken stream from a finished one. Read here with a real SSE client
(``httpx-sse``) through a real proxy; the thirds are checked on the engine (3000 seeded
decisions), the wire on one stream of each kind (a seed that gives one of each in three).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import httpx_sse

from chaosproxy.core import scenario as sc
from chaosproxy.core.engine import Engine, SimpleRequest
from tests.integration.sse_upstream import sse_upstream
from tests.support import wait_until

EVENTS = 8  # a whole stream: a client that got them all knows it is complete
WHOLE = [f'{{"i": {i}}}' for i in range(EVENTS)]
#: a seed under which the first three streams meet one rule each
SEED = 5


def test_a_third_of_the_streams_meet_each_rule() -> None:
    scenario, _ = sc.resolve("stream-cut")
    engine = Engine(scenario)  # the file's own seed
    sse = SimpleRequest(
        method="GET", host="x", path="/v1/chat", headers=[("Accept", "text/event-stream")]
    )
    fired = Counter(getattr(engine.decide(sse), "name", None) for _ in range(3000))
    assert set(fired) == {"reset-mid-stream", "stalled", "slow-first-token"}
    for name, n in fired.items():
        assert 0.30 <= n / 3000 <= 0.37, (name, n)
    plain = SimpleRequest(method="GET", host="x", path="/v1/chat", headers=[("Accept", "*/*")])
    assert engine.decide(plain) is None  # only event streams are touched


@dataclass
class Read:
    """One SSE client's view: each event's data and when it came, and how the stream ended."""

    events: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds after the request was sent
    error: BaseException | None = None


def read_stream(url: str, out: Read) -> None:
    started = time.monotonic()
    try:
        with (
            httpx.Client(timeout=10) as client,
            httpx_sse.connect_sse(client, "GET", url) as source,
        ):
            for event in source.iter_sse():
                out.events.append(event.data)
                out.times.append(time.monotonic() - started)
    except httpx.HTTPError as exc:
        out.error = exc


def test_shipped_stream_cut_scenario(make_proxy) -> None:
    with sse_upstream() as up:
        proxy = make_proxy("stream-cut", seed=SEED, upstream=up.url)
        reads = {i: Read() for i in range(3)}
        threads = [
            threading.Thread(
                target=read_stream, args=(f"{proxy.url}/sse?events={EVENTS}&client={i}", read)
            )
            for i, read in reads.items()
        ]
        for thread in threads:  # at once: the stall and the late start overlap
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        wait_until(lambda: len(proxy.decisions) == 3)
        rule_of = {int(r.url.rsplit("client=", 1)[1]): r for r in proxy.decisions}
        by_rule = {rule_of[i].rule: read for i, read in reads.items()}
        assert set(by_rule) == {"reset-mid-stream", "stalled", "slow-first-token"}
        # (a plain request, not an event stream, passes untouched)
        plain = httpx.get(f"{proxy.url}/sse?events=2", headers={"Accept": "*/*"}, timeout=10)
        assert plain.status_code == 200 and plain.text.count("data:") == 2

    reset = by_rule["reset-mid-stream"]
    # broken, and the client can tell: five events, then a connection reset (no clean end)
    assert reset.events == WHOLE[:5]
    assert isinstance(reset.error, httpx.ReadError) and "reset" in str(reset.error).lower()

    stalled = by_rule["stalled"]  # stalls for 2 s after 2 events, then goes on to its end
    assert stalled.events == WHOLE and stalled.error is None
    gap = stalled.times[2] - stalled.times[1]
    assert 2.0 <= gap < 3.5, stalled.times

    late = by_rule["slow-first-token"]  # complete, its first event 800 ms late
    assert late.events == WHOLE and late.error is None
    assert 0.8 <= late.times[0] < 1.6, late.times

    outcomes = {r.rule: r.outcome for r in rule_of.values()}
    assert outcomes == {
        "reset-mid-stream": "reset",
        "stalled": "response",
        "slow-first-token": "response",
    }
