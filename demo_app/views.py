"""The demo app's routes: the forecast, the dashboard and what the dashboard calls."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request, send_file
from flask.typing import ResponseReturnValue

from chaosproxy.demo_app.state import DemoState
from chaosproxy.demo_app.weather import clear_transitions

bp = Blueprint("demo", __name__)

#: POST /settings: field -> (type, minimum, maximum); booleans have no bounds.
SETTINGS: dict[str, tuple[type, float, float]] = {
    "retries": (bool, 0, 0),
    "breaker": (bool, 0, 0),
    "timeouts": (bool, 0, 0),
    "connect_timeout": (float, 0.01, 60),
    "read_timeout": (float, 0.01, 300),
    "max_attempts": (int, 1, 10),
    "max_retry_time": (float, 0.1, 300),
    "retry_after_cap": (float, 0, 60),
    "fail_max": (int, 1, 100),
    "reset_timeout": (float, 0.1, 600),
}


def _state() -> DemoState:
    state: DemoState = current_app.extensions["chaosdemo"]
    return state


class InvalidInput(Exception):
    """A request the app refuses with 400 and a JSON error naming the field."""


@bp.errorhandler(InvalidInput)
def _invalid(exc: InvalidInput) -> ResponseReturnValue:
    return jsonify(error=str(exc)), 400


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _check(field: str, value: Any) -> str | None:
    kind, low, high = SETTINGS[field]
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number between {low:g} and {high:g}"
    if kind is int and value != int(value):
        return f"must be a whole number between {low:g} and {high:g}"
    if not low <= value <= high:
        return f"must be between {low:g} and {high:g}"
    return None


@bp.get("/")
def dashboard() -> ResponseReturnValue:
    return render_template("index.html")


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/weather/<city>")
def weather(city: str) -> ResponseReturnValue:
    status, body = _state().lookup(city.lower())
    return jsonify(body), status


@bp.get("/status")
def status() -> ResponseReturnValue:
    return jsonify(_state().status())


@bp.post("/settings")
def settings() -> ResponseReturnValue:
    body = _json_body()
    problems = [
        f"settings.{k}: unknown setting (valid: {', '.join(SETTINGS)})"
        for k in body
        if k not in SETTINGS
    ]
    problems += [
        f"settings.{k}: {msg}"
        for k, v in body.items()
        if k in SETTINGS and (msg := _check(k, v)) is not None
    ]
    if problems:
        return jsonify(error="invalid settings", problems=problems), 400
    state = _state()
    client = state.client
    for key, value in body.items():
        if key == "fail_max":
            client.breaker.fail_max = int(value)
        elif key == "reset_timeout":
            client.breaker.reset_timeout = float(value)
        else:
            kind = SETTINGS[key][0]
            setattr(client.settings, key, kind(value))
    if body.get("breaker") is False and client.breaker.current_state != "closed":
        client.breaker.close()  # switched off: forget its verdict; on again, it starts afresh
    return jsonify(
        settings=client.settings.as_dict(),
        breaker={
            "fail_max": client.breaker.fail_max,
            "reset_timeout": client.breaker.reset_timeout,
        },
    )


@bp.post("/traffic")
def traffic() -> ResponseReturnValue:
    body = _json_body()
    gen = _state().traffic
    if "rate" in body:
        rate = body["rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise InvalidInput("traffic.rate: must be a number of requests per second")
        try:
            gen.set_rate(float(rate))
        except ValueError as exc:
            raise InvalidInput(f"traffic.rate: {exc}") from None
    running = body.get("running")
    if running is True:
        gen.start()
    elif running is False:
        gen.stop()
    elif running is not None:
        raise InvalidInput("traffic.running: must be true or false")
    return jsonify(gen.state())


@bp.post("/reset")
def reset() -> ResponseReturnValue:
    """Zero the counters, close the breaker and forget its transitions (the cache is kept)."""
    state = _state()
    state.metrics.reset()
    state.client.breaker.close()
    clear_transitions(state.client.breaker)  # after close(): its own transition goes too
    state.traffic.reset_counts()
    return jsonify(state.breaker_status())


@bp.get("/proxy/scenarios")
def proxy_scenarios() -> ResponseReturnValue:
    code, body = _state().proxy.scenarios()
    return jsonify(body), code


@bp.put("/proxy/scenario")
def proxy_scenario() -> ResponseReturnValue:
    body = _json_body()
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("scenario.name: give the name of a shipped scenario")
    code, answer = _state().proxy.apply(name)
    return jsonify(answer), code


@bp.post("/proxy/phase")
def proxy_phase() -> ResponseReturnValue:
    body = _json_body()
    phase = body.get("phase")
    if not isinstance(phase, str) or not phase:
        raise InvalidInput("phase: give a phase name")
    code, answer = _state().proxy.jump(phase)
    return jsonify(answer), code


@bp.post("/assessment")
def assessment_start() -> ResponseReturnValue:
    """Run ``chaosproxy assess --quick`` against a copy of the app's client (202), unless
    one is running (409) or the app does not know its real upstream (503)."""
    state = _state()
    client = state.client
    runs = state.assessments
    if runs.upstream_url is None:
        return jsonify(
            error="assessing needs the real upstream: start the demo with `chaosproxy demo`",
            **runs.status(),
        ), 503
    try:
        started = runs.start(
            request.host_url, client.settings, client.breaker.fail_max, client.breaker.reset_timeout
        )
    except ValueError as exc:
        return jsonify(error=str(exc), **runs.status()), 409
    return jsonify(started), 202


@bp.get("/assessment")
def assessment_status() -> ResponseReturnValue:
    return jsonify(_state().assessments.status())


@bp.get("/assessment/report.html")
def assessment_report() -> ResponseReturnValue:
    runs = _state().assessments
    if not runs.status()["report"]:
        return jsonify(error="no assessment report yet: run one"), 404
    return send_file(runs.html_path, mimetype="text/html", max_age=0)


@bp.get("/assess/weather/<city>")
def assess_weather(city: str) -> ResponseReturnValue:
    """The forecast through the client under assessment (not counted on the dashboard)."""
    state = _state()
    target = state.assessments.target
    if target is None:
        return jsonify(error="no assessment is running"), 404
    status, body = state.lookup(city.lower(), target, record=False)
    return jsonify(body), status
