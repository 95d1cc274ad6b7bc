"""ChaosAddon's hooks called directly, as mitmproxy's own addons are tested: with
``mitmproxy.test.taddons.context()`` and ``mitmproxy.test.tflow.tflow()``, no sockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.exceptions import OptionsError
from mitmproxy.test import taddons, tflow

from chaosproxy.core.engine import Decision
from chaosproxy.core.scenario import load_text
from chaosproxy.core.timeouts import Timeouts
from chaosproxy.proxy_addons.bodies import STREAM_FROM
from chaosproxy.proxy_addons.chaos import ANNOTATION_HEADER, ChaosAddon
from chaosproxy.proxy_addons.recorder import METADATA_KEY, summary_lines

ERROR_503 = "rules: [{name: down, match: {path: /down}, fault: {type: error, status: 503}}]\n"


def scenario_file(tmp_path: Path, text: str = ERROR_503, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def flow_to(path: str, **request: Any) -> Any:
    flow = tflow.tflow()
    flow.request.path = path
    for key, value in request.items():
        setattr(flow.request, key, value)
    return flow


async def run_hook(result: Any) -> None:
    if result is not None:
        await result


# --------------------------------------------------------------------------- options


def test_load_declares_the_chaos_options() -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        for name in (
            "chaos_scenario",
            "chaos_seed",
            "chaos_admin",
            "chaos_admin_token",
            "chaos_watch",
            "chaos_decision_log",
            "chaos_upstream_timeout",
            "chaos_state",
        ):
            assert name in tctx.options


def test_chaos_state_chooses_where_the_state_lives() -> None:
    from mitmproxy.exceptions import OptionsError

    from chaosproxy.state import MemoryState
    from chaosproxy.state.shared import RedisState

    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        assert isinstance(addon.state, MemoryState)  # the default: empty
        tctx.configure(addon, chaos_state="redis://127.0.0.1:6390/3")
        assert isinstance(addon.state, RedisState) and addon.state.url.db == 3
        assert addon.decider.state is addon.state  # type: ignore[attr-defined]
        with pytest.raises(OptionsError, match="Cannot use chaos_state http://x"):
            tctx.configure(addon, chaos_state="http://x")


def test_configure_applies_a_scenario_file_and_a_seed(tmp_path: Path) -> None:
    addon = ChaosAddon()
    path = scenario_file(tmp_path)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(path), chaos_seed=7)
        assert addon.engine.source == str(path)
        assert [r.name for _, r in addon.engine.scenario.all_rules()] == ["down"]
        assert addon.engine.seed == 7


def test_configure_applies_a_shipped_scenario_by_name() -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario="outage")
        assert addon.engine.scenario.label == "outage"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"chaos_admin": "127.0.0.1:notaport"}, "chaos_admin: .* is not HOST:PORT"),
        ({"chaos_admin": "0.0.0.0:8475"}, "chaos_admin: the control API on 0.0.0.0"),
        ({"chaos_watch": True}, "chaos_watch: set chaos_scenario"),
        ({"chaos_scenario": "no-such-scenario", "chaos_watch": True}, "chaos_watch: "),
        ({"chaos_decision_log": "/nonexistent-dir/x.jsonl"}, "chaos_decision_log: "),
        ({"chaos_upstream_timeout": "soon"}, "chaos_upstream_timeout: 'soon' is not a duration"),
    ],
)
def test_bad_options_raise_options_error_and_roll_back(
    options: dict[str, Any], match: str
) -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        before = {name: getattr(tctx.options, name) for name in options}
        with pytest.raises(OptionsError, match=match):
            tctx.configure(addon, **options)
        assert {name: getattr(tctx.options, name) for name in options} == before
        assert addon.control.address is None and addon.watch.path is None


def test_chaos_upstream_timeout_sets_the_deadlines() -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        assert addon.deadlines.timeouts == Timeouts(10.0, 60.0)
        tctx.configure(addon, chaos_upstream_timeout="connect=1s,read=off")
        assert addon.deadlines.timeouts == Timeouts(1.0, None)


def test_chaos_admin_beyond_loopback_is_accepted_with_a_token() -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_admin="0.0.0.0:0", chaos_admin_token="t")
        assert addon.control.address == ("0.0.0.0", 0) and addon.control.token == "t"


def test_a_bad_chaos_scenario_on_a_running_proxy_rolls_back(tmp_path: Path) -> None:
    good = scenario_file(tmp_path)
    bad = scenario_file(tmp_path, "rules:\n  - fault: {type: error, status: 99}\n", "bad.yaml")

    async def go() -> None:
        addon = ChaosAddon()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, chaos_scenario=str(good))
            await addon.running()
            try:
                with pytest.raises(OptionsError, match=r"bad.yaml:2:\d+: rules\[0\]\.fault\.status"):
                    tctx.configure(addon, chaos_scenario=str(bad))
                assert tctx.options.chaos_scenario == str(good)
                assert addon.engine.source == str(good)
            finally:
                addon.done()

    asyncio.run(go())


def test_a_bad_chaos_scenario_at_startup_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """mitmdump prints a script's exceptions with a traceback; a logged error at start-up
    makes it refuse to start with the located message only."""
    bad = scenario_file(tmp_path, "rules:\n  - fault: {type: error, status: 99}\n", "bad.yaml")
    addon = ChaosAddon()
    with caplog.at_level(logging.ERROR, "chaosproxy"), taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(bad))
    assert addon.engine.scenario.label == "passthrough"
    assert any("rules[0].fault.status" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- hooks


def test_an_error_fault_answers_the_flow_and_tags_it(tmp_path: Path) -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(scenario_file(tmp_path)))
        flow = flow_to("/down")
        asyncio.run(run_hook(addon.request(flow)))
        assert flow.response is not None and flow.response.status_code == 503
        assert flow.metadata[METADATA_KEY]["rule"] == "down"
        assert flow.metadata[METADATA_KEY]["fault"] == "error 503"
        assert flow.marked == ":zap:"
        assert addon.in_flight == 1
        addon.response(flow)
        assert addon.in_flight == 0
        [record] = addon.decisions.records()
        assert (record.rule, record.outcome, record.status) == ("down", "response", 503)
        assert record.upstream_status is None  # answered before the upstream was called
        assert flow.metadata[METADATA_KEY]["outcome"] == "response"
        assert flow.comment.endswith("-> client got: response 503")


def test_a_request_no_rule_matches_passes_untouched(tmp_path: Path) -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(scenario_file(tmp_path)))
        flow = flow_to("/up")
        assert addon.request(flow) is None
        assert flow.response is None and METADATA_KEY not in flow.metadata
        assert not flow.marked
        flow.response = tflow.tresp()
        addon.responseheaders(flow)
        assert addon.response(flow) is None
        assert ANNOTATION_HEADER not in flow.response.headers
        [record] = addon.decisions.records()
        assert (record.rule, record.outcome, record.status) == (None, "response", 200)
        assert addon.engine.stats()["requests"] == 1


def test_a_flow_already_answered_or_dead_is_left_alone(tmp_path: Path) -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(scenario_file(tmp_path)))
        answered = flow_to("/down")
        answered.response = tflow.tresp()
        assert addon.request(answered) is None
        assert answered.response.status_code == 200 and METADATA_KEY not in answered.metadata


def test_annotate_names_the_rule_in_the_answer(tmp_path: Path) -> None:
    text = "annotate: true\n" + ERROR_503.replace("error, status: 503", "latency, delay: 0ms")
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(scenario_file(tmp_path, text)))
        flow = flow_to("/down")
        asyncio.run(run_hook(addon.request(flow)))
        flow.response = tflow.tresp()
        addon.response(flow)
        assert flow.response.headers[ANNOTATION_HEADER] == "down"


def test_a_large_body_streams_when_no_rule_needs_it(tmp_path: Path) -> None:
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(scenario_file(tmp_path)))
        flow = flow_to("/up")
        flow.request.headers["content-length"] = str(STREAM_FROM)
        addon.requestheaders(flow)
        assert flow.request.stream is True
        assert addon.request(flow) is None  # decided from the head: counted once
        assert addon.engine.stats()["requests"] == 1


def test_a_body_rule_reads_a_large_body_whole(tmp_path: Path) -> None:
    text = "rules: [{name: b, match: {body: x}, fault: {type: error, status: 500}}]\n"
    addon = ChaosAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, chaos_scenario=str(scenario_file(tmp_path, text)))
        flow = flow_to("/up")
        flow.request.headers["content-length"] = str(STREAM_FROM)
        addon.requestheaders(flow)
        assert not flow.request.stream


def test_the_error_hook_records_a_killed_flow(tmp_path: Path) -> None:
    addon = ChaosAddon()
    with taddons.context(addon):
        flow = flow_to("/x")
        flow.error = tflow.terr(flow.error.KILLED_MESSAGE if flow.error else "killed by user")
        flow.error.msg = flow.error.KILLED_MESSAGE
        addon.error(flow)
        [record] = addon.decisions.records()
        assert record.outcome == "closed"


# --------------------------------------------------------------------------- the Decider


class LaterDecider:
    """A decider that answers later (as a ``--workers`` coordinator does)."""

    def __init__(self, decision: Decision | None) -> None:
        self.decision = decision
        self.asked: list[str] = []

    def decide_early(self, view: Any) -> tuple[bool, Decision | None]:
        return False, None

    async def _later(self) -> Decision | None:
        await asyncio.sleep(0)
        return self.decision

    def decide(self, view: Any, request: Any) -> Any:
        self.asked.append(view.path)
        return self._later()


def test_the_addon_applies_what_any_decider_answers_later(tmp_path: Path) -> None:
    source = ChaosAddon(load_text(ERROR_503, "s.yaml"))
    decision = source.engine.decide(flow_to_view("/down"))
    assert decision is not None
    addon = ChaosAddon()  # its own engine says passthrough: the decider's answer wins
    addon.decider = LaterDecider(decision)
    with taddons.context(addon):
        flow = flow_to("/down")
        pending = addon.request(flow)
        assert pending is not None and flow.response is None
        asyncio.run(pending)
        assert addon.decider.asked == ["/down"]
        assert flow.response is not None and flow.response.status_code == 503


def test_a_decider_answering_none_leaves_the_flow_untouched() -> None:
    addon = ChaosAddon()
    addon.decider = LaterDecider(None)
    with taddons.context(addon):
        flow = flow_to("/down")
        asyncio.run(addon.request(flow))
        assert flow.response is None and addon.in_flight == 0


def flow_to_view(path: str) -> Any:
    from chaosproxy.proxy_addons.wire import FlowRequest

    return FlowRequest(flow_to(path), None)


# --------------------------------------------------------------------------- lifecycle


def test_running_starts_the_timeline_and_done_logs_the_summary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> ChaosAddon:
        addon = ChaosAddon(load_text(ERROR_503, "s.yaml"))
        with taddons.context(addon):
            await addon.running()
            assert addon.ready.is_set() and addon.serving
            assert addon.admin_url is None and addon.control_error is None
            addon.done()
        return addon

    with caplog.at_level(logging.INFO, "chaosproxy"):
        addon = asyncio.run(go())
    messages = [r.getMessage() for r in caplog.records]
    assert summary_lines(addon.engine)[0] in messages
    assert "rules that never matched (check their match blocks):" in messages


@pytest.mark.wire  # a loopback listener holds the port
def test_a_taken_required_admin_port_is_a_control_error() -> None:
    async def go() -> str | None:
        blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = blocker.sockets[0].getsockname()[1]
        addon = ChaosAddon(admin=("127.0.0.1", port))
        try:
            with taddons.context(addon):
                await addon.running()
                return addon.control_error
        finally:
            addon.done()
            blocker.close()

    error = asyncio.run(go())
    assert error is not None and "cannot start the control API on 127.0.0.1:" in error
