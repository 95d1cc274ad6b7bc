from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from chaosproxy.core import engine as eng
from chaosproxy.core.engine import Engine, Event, SimpleRequest
from chaosproxy.core.scenario import load_data, load_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def req(
    path: str = "/v1/forecast/berlin", method: str = "GET", host: str = "weather.example", **kw
) -> SimpleRequest:
    return SimpleRequest(method=method, host=host, path=path, **kw)


def fired(engine: Engine, requests: list[SimpleRequest]) -> list[str | None]:
    out = []
    for r in requests:
        d = engine.decide(r)
        out.append(d.name if d else None)
    return out


def rules(*rule_dicts: dict, seed: int | None = 1) -> Engine:
    return Engine(load_data({"seed": seed, "rules": list(rule_dicts)}))


ERR = {"type": "error", "status": 503}


# --------------------------------------------------------------------------- selection


def test_skip_every_times_follow_the_pseudo_code() -> None:
    engine = rules({"name": "r", "skip": 2, "every": 3, "times": 2, "fault": ERR})
    results = fired(engine, [req()] * 15)
    fired_at = [i + 1 for i, name in enumerate(results) if name]
    assert fired_at == [5, 8]  # seen 5 and 8: (seen - skip) % 3 == 0; then times is used up


def test_every_without_skip_fires_on_the_nth_2nth() -> None:
    engine = rules({"name": "r", "every": 2, "fault": ERR})
    assert fired(engine, [req()] * 6) == [None, "r", None, "r", None, "r"]


def test_counters_count_matching_requests_only() -> None:
    engine = rules({"name": "r", "match": {"path": "/a"}, "every": 2, "fault": ERR})
    results = fired(engine, [req("/a"), req("/b"), req("/b"), req("/a")])
    assert results == [None, None, None, "r"]
    assert engine.stats()["rules"][0]["seen"] == 2


def test_first_rule_that_fires_wins_and_a_missed_draw_falls_through() -> None:
    engine = rules(
        {"name": "never", "probability": 0, "fault": ERR},
        {"name": "first", "fault": ERR},
        {"name": "second", "fault": ERR},
    )
    assert fired(engine, [req()] * 3) == ["first"] * 3
    stats = {r["name"]: r for r in engine.stats()["rules"]}
    assert stats["never"]["seen"] == 3 and stats["never"]["injected"] == 0
    assert stats["second"]["seen"] == 0  # never reached: the first rule fired


def test_times_exhausted_lets_later_rules_fire() -> None:
    engine = rules({"name": "once", "times": 1, "fault": ERR}, {"name": "rest", "fault": ERR})
    assert fired(engine, [req()] * 3) == ["once", "rest", "rest"]


def test_no_rules_or_paused_means_untouched() -> None:
    assert fired(rules(), [req()]) == [None]
    engine = rules({"name": "r", "fault": ERR})
    engine.pause()
    assert fired(engine, [req()] * 2) == [None, None]
    engine.resume()
    assert fired(engine, [req()]) == ["r"]
    assert engine.stats()["requests"] == 3 and engine.stats()["injected"] == 1


# --------------------------------------------------------------------------- determinism


def decisions_for(seed: int, order: list[SimpleRequest]) -> dict[tuple[str, int], bool]:
    engine = rules(
        {"name": "a", "match": {"path": "/a"}, "probability": 0.5, "fault": ERR},
        {"name": "b", "match": {"path": "/b"}, "probability": 0.3, "fault": ERR},
        seed=seed,
    )
    seen: dict[str, int] = {"a": 0, "b": 0}
    out = {}
    for r in order:
        name = r.path[1]
        seen[name] += 1
        out[(name, seen[name])] = engine.decide(r) is not None
    return out


def test_same_seed_same_decision_for_the_nth_match_whatever_the_interleaving() -> None:
    base = [req("/a")] * 50 + [req("/b")] * 50
    shuffled = base[:]
    random.Random(99).shuffle(shuffled)
    assert decisions_for(7, base) == decisions_for(7, shuffled)
    assert decisions_for(7, base) != decisions_for(8, base)


def test_decisions_do_not_depend_on_thread_scheduling() -> None:
    def run() -> set[int]:
        engine = rules({"name": "r", "probability": 0.4, "fault": ERR}, seed=11)
        hits: set[int] = set()
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(250):
                d = engine.decide(req())
                if d:
                    with lock:
                        hits.add(d.match_number)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert engine.stats()["rules"][0]["seen"] == 2000
        return hits

    assert run() == run()


def test_rate_matches_probability() -> None:
    engine = rules({"name": "r", "probability": 0.33, "fault": ERR}, seed=5)
    hits = sum(1 for _ in range(10_000) if engine.decide(req()))
    assert 3100 <= hits <= 3500


def test_seed_from_file_overridden_by_cli_and_chosen_when_absent() -> None:
    scenario = load_data({"seed": 7, "rules": []})
    assert Engine(scenario).seed == 7
    assert Engine(scenario, seed=9).seed == 9
    unseeded = load_data({"rules": []})
    seeds = {Engine(unseeded).seed for _ in range(5)}
    assert len(seeds) > 1


def test_fault_rng_is_per_rule_and_match() -> None:
    d1 = rules({"name": "r", "fault": ERR}, seed=3).decide(req())
    d2 = rules({"name": "r", "fault": ERR}, seed=3).decide(req())
    assert d1 and d2
    assert d1.rng().random() == d2.rng().random()
    other = rules({"name": "s", "fault": ERR}, seed=3).decide(req())
    assert other and other.rng().random() != d1.rng().random()


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("match", "incoming", "expected"),
    [
        ({"path": "/v1/*"}, req("/v1/forecast/berlin"), True),
        ({"path": "/v1/*"}, req("/V1/forecast"), False),
        ({"path": "/v1/forecast/?"}, req("/v1/forecast/x"), True),
        ({"path": "re:^/v1/(forecast|alerts)/"}, req("/v1/alerts/x"), True),
        ({"path": "re:berlin"}, req("/v1/forecast/berlin"), True),
        ({"path": "/a b"}, req("/a b"), True),
        ({"host": "weather.*"}, req(host="weather.example"), True),
        ({"host": "WEATHER.example"}, req(host="weather.example"), True),
        ({"host": "weather"}, req(host="127.0.0.1", upstream="weather"), True),
        ({"host": "billing"}, req(host="127.0.0.1", upstream="weather"), False),
        ({"method": "post"}, req(method="POST"), True),
        ({"method": ["GET", "HEAD"]}, req(method="POST"), False),
        ({"headers": {"x-tenant": "ac*"}}, req(headers=[("X-Tenant", "acme")]), True),
        (
            {"headers": {"X-Tenant": "acme"}},
            req(headers=[("X-Tenant", "other"), ("x-tenant", "acme")]),
            True,
        ),
        ({"headers": {"X-Tenant": "acme"}}, req(), False),
        ({"headers": {"X-Tenant": "Acme"}}, req(headers=[("X-Tenant", "acme")]), False),
        ({"query": {"units": "metric"}}, req(query_pairs=[("units", "metric")]), True),
        ({"query": {"units": "metric"}}, req(query_pairs=[("Units", "metric")]), False),
        ({"body": "*mutation*"}, req(content=b'{"query": "mutation X"}'), True),
        (
            {"json": {"operationName": "GetUser"}},
            req(content=b'{"operationName": "GetUser"}'),
            True,
        ),
        (
            {"json": {"operationName": "Get*"}},
            req(content=b'{"operationName": "ListUsers"}'),
            False,
        ),
        ({"json": {"items.1.id": "5"}}, req(content=b'{"items": [{"id": 4}, {"id": 5}]}'), True),
        ({"json": {"a.b": "true"}}, req(content=b'{"a": {"b": true}}'), True),
        ({"json": {"a": "*"}}, req(content=b"not json"), False),
    ],
)
def test_matching(match: dict, incoming: SimpleRequest, expected: bool) -> None:
    engine = rules({"name": "r", "match": match, "fault": ERR})
    assert (engine.decide(incoming) is not None) is expected


def test_body_is_read_only_when_a_rule_asks_and_at_most_once() -> None:
    reads: list[int] = []

    class Counting(SimpleRequest):
        def body(self) -> bytes:
            reads.append(1)
            return b'{"op": "x"}'

    r = Counting("GET", "h", "/p")
    rules({"name": "r", "match": {"path": "/p"}, "fault": ERR}).decide(r)
    assert reads == []
    rules(
        {"name": "a", "match": {"json": {"op": "y"}}, "fault": ERR},
        {"name": "b", "match": {"body": "*x*"}, "fault": ERR},
    ).decide(r)
    assert reads == [1]


# --------------------------------------------------------------------------- phases and ttl

STORM = """
seed: 1
phases:
  - {name: calm, duration: 10s}
  - name: outage
    duration: 20s
    rules: [{name: down, times: 1, fault: {type: abort}}]
  - name: recovery
    duration: 15s
    rules: [{name: slow, fault: {type: latency, delay: 400ms}}]
loop: LOOP
"""


def storm(loop: bool, events: list[Event] | None = None) -> tuple[Engine, FakeClock]:
    clock = FakeClock()
    engine = Engine(
        load_text(STORM.replace("LOOP", str(loop).lower())),
        clock=clock,
        on_event=events.append if events is not None else None,
    )
    engine.start()
    return engine, clock


def test_phases_follow_the_clock_from_start() -> None:
    events: list[Event] = []
    engine, clock = storm(False, events)
    timeline: list[tuple[float, str | None, str | None]] = []
    for t in (5, 15, 29, 35, 44, 46, 500):
        clock.now = 1000 + t
        d = engine.decide(req())
        timeline.append((t, engine.phase, d.name if d else None))
    assert timeline == [
        (5, "calm", None),
        (15, "outage", "down"),
        (29, "outage", None),  # times: 1 used up in this phase
        (35, "recovery", "slow"),
        (44, "recovery", "slow"),
        (46, "recovery", "slow"),  # loop: false stays in the last phase
        (500, "recovery", "slow"),
    ]
    assert [e.message for e in events] == [
        "phase calm begins",  # at start, when the proxy is ready
        "phase outage begins",
        "phase recovery begins",
    ]


def test_explain_moves_the_timeline_on_as_tick_would_then_answers_for_that_phase() -> None:
    events: list[Event] = []
    engine, clock = storm(False, events)
    assert [v.rule for v in engine.explain(req())] == []  # calm: no rules
    clock.now = 1015
    [verdict] = engine.explain(req())
    assert (verdict.rule, verdict.phase, verdict.fires) == ("down", "outage", True)
    assert engine.phase == "outage" and events[-1].message == "phase outage begins"
    assert engine.decide(req()).name == "down"


def test_looping_restarts_counters_in_each_phase() -> None:
    engine, clock = storm(True)
    clock.now = 1015
    assert engine.decide(req()).name == "down"
    assert engine.decide(req()) is None
    clock.now = 1000 + 45 + 15  # second cycle, outage again: its counters start afresh
    assert engine.decide(req()).name == "down"
    assert engine.phase == "outage"
    clock.now = 1000 + 45 * 100 + 12  # many idle cycles later: still the right phase
    engine.tick()
    assert engine.phase == "outage"


def test_next_change_and_tick_emit_phase_events_without_requests() -> None:
    events: list[Event] = []
    engine, clock = storm(False, events)
    assert engine.next_change_in() == pytest.approx(10)
    clock.now = 1010.5
    engine.tick()
    assert engine.phase == "outage" and [e.phase for e in events] == ["calm", "outage"]
    assert engine.next_change_in() == pytest.approx(19.5)
    clock.now = 1031
    engine.tick()
    assert engine.next_change_in() is None  # last phase, loop: false


def test_jump_restarts_the_target_phase_clock_and_counters() -> None:
    events: list[Event] = []
    engine, clock = storm(False, events)
    clock.now = 1012
    assert engine.decide(req()).name == "down"
    clock.now = 1025
    engine.jump_to("outage")
    assert engine.decide(req()).name == "down"  # counters start afresh
    clock.now = 1044  # 19 s into the restarted outage
    assert engine.decide(req()) is None
    assert engine.phase == "outage"
    clock.now = 1046
    engine.tick()
    assert engine.phase == "recovery"
    assert [e.message for e in events] == [
        "phase calm begins",
        "phase outage begins",
        "phase outage begins (jump)",
        "phase recovery begins",
    ]
    with pytest.raises(KeyError, match="no phase 'nope'; phases: calm, outage, recovery"):
        engine.jump_to("nope")


def test_apply_restarts_the_clock() -> None:
    events: list[Event] = []
    engine, clock = storm(False, events)
    clock.now = 1100
    engine.apply(engine.scenario)
    clock.now = 1105
    engine.tick()
    assert engine.phase == "calm"
    assert [e.message for e in events] == ["phase calm begins"] * 2  # at start, at apply


def test_before_start_the_clock_waits_and_the_log_says_nothing_yet() -> None:
    events: list[Event] = []
    clock = FakeClock()
    engine = Engine(load_text(STORM.replace("LOOP", "false")), clock=clock, on_event=events.append)
    engine.apply(engine.scenario)  # e.g. mitmdump's option, before the listeners are bound
    clock.now = 1050
    engine.start()
    assert events == [Event("phase", "phase calm begins", "calm")]
    clock.now = 1059
    engine.tick()
    assert engine.phase == "calm"  # 9 s after start, not 59 s after apply


def test_reset_goes_back_to_the_first_phase_and_says_so() -> None:
    events: list[Event] = []
    engine, clock = storm(False, events)
    clock.now = 1035
    assert engine.decide(req()).name == "slow"
    engine.reset()
    assert engine.phase == "calm" and events[-1].message == "phase calm begins (reset)"
    clock.now = 1044
    engine.tick()
    assert engine.phase == "calm"  # 9 s after the reset
    clock.now = 1046
    engine.tick()
    assert engine.phase == "outage"  # the clock restarted at the reset


def test_ttl_reverts_to_passthrough_and_says_so() -> None:
    events: list[Event] = []
    clock = FakeClock()
    engine = Engine(
        load_text("ttl: 30s\nrules: [{name: r, fault: {type: error}}]"),
        clock=clock,
        on_event=events.append,
    )
    engine.start()
    assert engine.next_change_in() == pytest.approx(30)
    clock.now = 1029
    assert engine.decide(req()) is not None
    clock.now = 1030
    assert engine.decide(req()) is None
    assert engine.scenario.label == "passthrough"
    assert events[0].kind == "ttl" and "reached its ttl" in events[0].message


def test_reset_zeroes_counters_and_restarts_the_timeline() -> None:
    engine, clock = storm(False)
    clock.now = 1015
    engine.decide(req())
    engine.reset()
    stats = engine.stats()
    assert stats["requests"] == 0 and all(r["seen"] == 0 for r in stats["rules"])
    assert engine.phase == "calm"


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_fixed_window_and_rejections_do_not_count() -> None:
    clock = FakeClock()
    engine = Engine(
        load_text("rules: [{name: rl, fault: {type: rate_limit, limit: 2, per: 10s}}]"), clock=clock
    )
    outcomes = []
    for t in (0, 1, 2, 3.5, 9.9, 10, 10.5, 11):
        clock.now = 1000 + t
        d = engine.decide(req())
        outcomes.append(d.retry_after if d else "ok")
    assert outcomes == ["ok", "ok", 8, 7, 1, "ok", "ok", 9]


def test_rate_limit_per_header_key() -> None:
    engine = Engine(
        load_text(
            "rules: [{name: rl, fault: {type: rate_limit, limit: 1, per: 1m, key: 'header:X-Api-Key'}}]"
        )
    )

    def call(key: str) -> bool:
        return engine.decide(req(headers=[("x-api-key", key)])) is not None

    assert [call("a"), call("b"), call("a"), call("b"), call("c")] == [
        False,
        False,
        True,
        True,
        False,
    ]


def test_rate_limit_under_the_limit_lets_later_rules_fire() -> None:
    engine = rules(
        {"name": "rl", "fault": {"type": "rate_limit", "limit": 1, "per": "1m"}},
        {"name": "slow", "fault": {"type": "latency", "delay": "1ms"}},
    )
    assert fired(engine, [req()] * 3) == ["slow", "rl", "rl"]


def test_rate_limit_explain_is_a_dry_run_that_says_under_the_limit() -> None:
    clock = FakeClock()
    engine = Engine(
        load_text("rules: [{name: rl, fault: {type: rate_limit, limit: 1, per: 10s}}]"), clock=clock
    )
    [verdict] = engine.explain(req())
    assert verdict.reason == "matches, but is under its rate limit" and not verdict.fires
    assert engine.decide(req()) is None  # the explain above did not use up the limit
    [verdict] = engine.explain(req())
    assert verdict.fires and verdict.reason == "matches (match #2): fires"
    decision = engine.decide(req())
    assert decision is not None and decision.retry_after == 10


# --------------------------------------------------------------------------- selection steps


def test_a_rule_compiles_to_only_the_steps_it_uses_in_the_documented_order() -> None:
    def steps(rule: dict) -> list[str]:
        [state] = rules({**rule, "name": "r"}).rule_states()
        return [type(step).__name__ for step in state.steps]

    assert steps({"fault": ERR}) == []
    assert steps({"skip": 1, "every": 2, "times": 3, "probability": 0.5, "fault": ERR}) == [
        "Skip",
        "Every",
        "Times",
        "Probability",
    ]
    assert steps({"per_request": {"times": 2}, "times": 0, "probability": 0.5, "fault": ERR}) == [
        "Times",
        "PerRequest",
        "Probability",
    ]
    rate = {"type": "rate_limit", "limit": 1}
    assert steps({"every": 2, "fault": [rate, ERR]}) == ["Every", "Gate"]


def test_each_step_decides_and_says_why_not() -> None:
    [state] = rules({"name": "r", "skip": 2, "every": 3, "times": 1, "fault": ERR}).rule_states()
    skip, every, times = state.steps

    def trial(n: int) -> eng.Trial:
        return eng.Trial(state, req(), n, 1, FakeClock(), dry_run=True)

    assert not skip.passes(trial(2)) and skip.passes(trial(3))
    assert skip.why(trial(2)) == "skip: 2 lets it through (match #2)"
    assert not every.passes(trial(4)) and every.passes(trial(5))
    assert every.why(trial(4)) == "every: 3 (match #4 is not its turn)"
    assert times.passes(trial(5))
    state.injected = 1
    assert not times.passes(trial(5)) and times.why(trial(5)) == "times: 1 already injected"


# --------------------------------------------------------------------------- explain + stats


def test_explain_says_why_each_rule_does_not_fire_and_changes_nothing() -> None:
    engine = rules(
        {"name": "posts", "match": {"method": "POST"}, "fault": ERR},
        {"name": "later", "skip": 1, "fault": ERR},
        {"name": "turns", "every": 2, "fault": ERR},
        {"name": "coin", "probability": 0.000001, "fault": ERR},
        {"name": "catch", "fault": ERR},
        {"name": "after", "fault": ERR},
    )
    verdicts = {v.rule: v for v in engine.explain(req())}
    assert "method GET is not POST" in verdicts["posts"].reason
    assert "skip: 1" in verdicts["later"].reason
    assert "every: 2" in verdicts["turns"].reason
    assert "probability 1e-06" in verdicts["coin"].reason and "seed 1" in verdicts["coin"].reason
    assert verdicts["catch"].fires and verdicts["catch"].fault == "error 503"
    assert "rule 'catch' fires first" in verdicts["after"].reason
    assert engine.stats()["requests"] == 0 and engine.stats()["rules"][1]["seen"] == 0
    assert fired(engine, [req()]) == ["catch"]


def test_stats_shape() -> None:
    engine = rules({"name": "r", "fault": [{"type": "latency", "delay": "1s"}, ERR]}, seed=4)
    engine.decide(req())
    assert engine.stats() == {
        "scenario": "inline",
        "seed": 4,
        "seed_source": "scenario",
        "phase": None,
        "paused": False,
        "requests": 1,
        "injected": 1,
        "rules": [
            {
                "name": "r",
                "phase": None,
                "seen": 1,
                "injected": 1,
                "fault": "latency 1s + error 503",
            }
        ],
    }


def test_compile_pattern_exact_and_glob() -> None:
    exact: Callable[[str], bool] = eng.compile_pattern("/health")
    assert exact("/health") and not exact("/healthz")
    assert eng.compile_pattern("*")("/anything/at/all")


# --------------------------------------------------------------------------- quick path test


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("/api/checkout/*", "/api/checkout/"),
        ("/healthz", "/healthz"),
        ("/static/img/*.png", "/static/img/"),
        ("/v?/x", "/v"),
        ("/[ab]/x", "/"),
        ("*", ""),
        ("re:^/v2/users/[0-9]+$", "/v2/users/"),
        ("re:^/v2/(users|orders)", ""),  # alternatives: no prefix claimed
        ("re:/v2/users", ""),  # unanchored: matches anywhere
        ("re:^/abc*", "/ab"),  # c is quantified
        ("re:^/abc?d", "/ab"),
        ("re:^/ab{2}", "/a"),
        ("re:^/a\\.b", "/a"),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert eng.literal_prefix(pattern) == prefix


def test_every_path_a_pattern_matches_starts_with_its_literal_prefix() -> None:
    rng = random.Random(7)
    pieces = ["/", "a", "b", "ab", "v2", "*", "?", "[ab]", ".", "x"]
    regex_pieces = ["/", "a", "b", "c", "*", "+", "?", ".", "[ab]", "(a|b)", "{2}", "\\."]
    texts = [
        "/" + "".join(rng.choice("ab/.vx2c") for _ in range(rng.randrange(8))) for _ in range(300)
    ]
    for _ in range(400):
        if rng.random() < 0.5:
            pattern = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 6)))
        else:
            pattern = "re:^" + "".join(rng.choice(regex_pieces) for _ in range(rng.randrange(1, 6)))
        try:
            test = eng.compile_pattern(pattern)
        except Exception:  # an invalid regex from the random pieces: not a pattern
            continue
        prefix = eng.literal_prefix(pattern)
        for text in texts:
            if test(text):
                assert text.startswith(prefix), (pattern, prefix, text)


def test_rules_after_a_prefix_miss_still_match_on_headers_and_query() -> None:
    engine = rules(
        {"name": "api", "match": {"path": "/api/*"}, "fault": ERR},
        {"name": "tenant", "match": {"headers": {"X-Tenant": "acme"}}, "fault": ERR},
        {"name": "debug", "match": {"query": {"debug": "1"}}, "fault": ERR},
    )
    decided = fired(
        engine,
        [
            req("/api/x"),
            req("/other", headers=[("x-tenant", "acme")]),
            req("/other", query_pairs=[("debug", "1")]),
            req("/other"),
        ],
    )
    assert decided == ["api", "tenant", "debug", None]


def test_flow_request_reads_headers_in_one_pass_as_it_reads_them_one_by_one() -> None:
    from mitmproxy.http import Headers
    from mitmproxy.test import tflow

    from chaosproxy.proxy_addons.wire import FlowRequest

    flow = tflow.tflow()
    flow.request.headers = Headers(
        [(b"X-Tenant", b"acme"), (b"x-tenant", b"beta"), (b"Accept", b"\xff/raw"), (b"Host", b"h")]
    )
    view = FlowRequest(flow, None)
    every = view.headers_by_name()
    for name in ("X-Tenant", "x-tenant", "ACCEPT", "host", "missing"):
        assert every.get(name.lower(), []) == view.header(name)
    facts = eng._Facts(view)
    assert list(facts.header("X-TENANT")) == ["acme", "beta"]
    assert list(facts.header("missing")) == []

    flow.request.path = "/p"
    assert view.query("debug") == []
    flow.request.path = "/p?debug=1&debug=2&x=%20"
    assert view.query("debug") == ["1", "2"] and view.query("x") == [" "]
