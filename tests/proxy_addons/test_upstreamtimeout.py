"""The seam's upstream give-up (proxy_addons/_internals/upstreamtimeout.py): it acts only
while its patch (timed_out_answers) is active; otherwise it touches nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaosproxy.proxy_addons import _internals
from chaosproxy.proxy_addons._internals import upstreamtimeout


class _Writer:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _connected() -> tuple[Any, http.HTTPFlow, _Writer]:
    flow = tflow.tflow()
    writer = _Writer()
    handler = SimpleNamespace(
        client=flow.client_conn,
        transports={flow.server_conn: SimpleNamespace(writer=writer, handler=None)},
    )
    return handler, flow, writer


def test_give_up_closes_the_upstream_and_leaves_the_answer_while_the_patch_is_active(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(_internals._active, "timed_out_answers", upstreamtimeout.PATCH)
    handler, flow, writer = _connected()
    answer = http.Response.make(504)
    assert upstreamtimeout.give_up(handler, flow, answer)
    assert writer.closed and flow.metadata[upstreamtimeout.ANSWER_KEY] is answer


def test_give_up_does_nothing_while_the_patch_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its check failed: the warning at start said the timeout cannot answer; closing the
    connection anyway would give the client mitmproxy's 502 instead, silently."""
    monkeypatch.delitem(_internals._active, "timed_out_answers", raising=False)
    handler, flow, writer = _connected()
    assert not upstreamtimeout.give_up(handler, flow, http.Response.make(504))
    assert not writer.closed and upstreamtimeout.ANSWER_KEY not in flow.metadata


def test_the_warning_when_the_patch_is_off_says_what_the_timeout_does_instead() -> None:
    fallback = upstreamtimeout.PATCH.fallback
    assert "--upstream-timeout" in fallback and "cannot answer 504" in fallback
