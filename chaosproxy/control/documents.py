"""The control API's documents: the JSON it answers and the bodies it accepts.

No I/O here: the routes (:mod:`.routes`) and the command line (``chaosproxy explain``
with ``--scenario``) build their answers with these functions.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from chaosproxy.control.target import ControlTarget
from chaosproxy.core import asked, yamlsource
from chaosproxy.core import scenario as scenario_mod
from chaosproxy.core.engine import Engine, SimpleRequest
from chaosproxy.core.scenario import Scenario, ScenarioError, model_document

logger = logging.getLogger("chaosproxy")

BODY_SOURCE = "body"
"""How located errors name a PUT body: ``body:3:12: rules[0].fault.status: ...``."""
#: Keys GET /scenario adds to the scenario document; PUT ignores them, so a GET's output
#: can be edited and PUT back.
RUNTIME_KEYS = ("seed_source", "phase", "source", "paused", "expires_in")


def scenario_state(target: ControlTarget) -> dict[str, Any]:
    """``GET /scenario``: the active scenario's document with ``phase``, ``seed`` (the one
    in use), ``source``, ``paused`` and ``expires_in`` (seconds until its ttl, or null)."""
    engine = target.engine
    doc = model_document(engine.scenario)
    doc["name"] = engine.scenario.label
    doc["seed"] = engine.seed
    doc["seed_source"] = engine.seed_source
    doc["phase"] = engine.phase
    doc["source"] = engine.source
    doc["paused"] = engine.paused
    doc["expires_in"] = engine.expires_in()
    return doc


def metrics_state(target: ControlTarget) -> dict[str, Any]:
    engine = target.engine
    return {
        "scenario": engine.scenario.label,
        "source": engine.source,
        "seed": engine.seed,
        "seed_source": engine.seed_source,
        "phase": engine.phase,
        "phases": engine.phase_names,
        "paused": engine.paused,
        "held": target.held,
    }


def shipped_list(active: str) -> list[dict[str, Any]]:
    """``GET /scenarios``: the shipped scenarios, for pickers."""
    out = []
    for entry in scenario_mod.shipped():
        try:
            sc = entry.load()
        except ScenarioError as exc:  # a broken shipped file must not hide the others
            logger.warning("shipped scenario %s is invalid: %s", entry.name, exc.lines[0])
            continue
        out.append(
            {
                "name": entry.name,
                "description": " ".join(sc.description.split()),
                "phases": [p.name for p in sc.phases],
                "rules": sum(1 for _ in sc.all_rules()),
                "active": sc.label == active,
            }
        )
    return out


def load_body(text: str) -> tuple[Scenario, str, int | None]:
    """A PUT /scenario body: a scenario (YAML or JSON), or ``{name: NAME}`` (optionally with
    ``seed``) for a shipped one. Returns (scenario, source, seed of this apply); raises
    ScenarioError.

    Only the name form carries a seed for the apply (it wins over the run's ``--seed``); in
    a whole scenario, ``seed:`` is the scenario's own, as in a file (the run's ``--seed``
    wins over it). The runtime keys of GET /scenario are ignored."""
    try:
        doc = yamlsource.parse(text)
    except yamlsource.YamlSourceError as exc:
        raise ScenarioError(BODY_SOURCE, exc.problems) from None
    data = doc.data
    if isinstance(data, dict):
        runtime = [k for k in RUNTIME_KEYS if k in data]
        if runtime:
            data = {k: v for k, v in data.items() if k not in RUNTIME_KEYS}
            text = json.dumps(data)  # locations are lost, but these bodies came from a GET
        if "name" in data and "rules" not in data and "phases" not in data:
            return _shipped(data)
    return scenario_mod.load_text(text, BODY_SOURCE, default_name="api"), "PUT /scenario", None


def _shipped(data: dict[str, Any]) -> tuple[Scenario, str, int | None]:
    extra = sorted(set(data) - {"name", "seed"})
    if extra:
        raise ScenarioError(
            BODY_SOURCE,
            [
                yamlsource.Problem(
                    extra[0],
                    "a body without rules or phases names a shipped scenario: give name "
                    "(and seed) only, or the whole scenario",
                )
            ],
        )
    name, seed = data["name"], data.get("seed")
    if not isinstance(name, str):
        raise ScenarioError(BODY_SOURCE, [yamlsource.Problem("name", "must be a string")])
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ScenarioError(BODY_SOURCE, [yamlsource.Problem("seed", "must be an integer")])
    # shipped names only: the API never reads other files from the proxy's disk
    entries = {entry.name: entry for entry in scenario_mod.shipped()}
    entry = entries.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, entries, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScenarioError(
            BODY_SOURCE,
            [
                yamlsource.Problem(
                    "name",
                    f"no shipped scenario named {name!r}{hint}; shipped: {', '.join(entries)}",
                )
            ],
        )
    # the file's own seed stays the scenario's (below the run's --seed); the body's is this
    # apply's (above it)
    return entry.load(), str(entry.path), seed


def explain_request(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    upstream: str | None = None,
) -> SimpleRequest:
    """The request ``explain`` asks about (raises ValueError for a URL without a host).
    ``CONNECT host:port`` is a forward proxy's CONNECT (its connect-time rules decide)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ValueError(f"{url!r} is not a URL")
    return SimpleRequest(
        point="connect" if method.upper() == "CONNECT" else "request",
        method=method.upper(),
        host=parts.hostname,
        path=unquote(parts.path or "/"),
        headers=list(headers),
        query_pairs=parse_qsl(parts.query, keep_blank_values=True),
        content=body,
        upstream=upstream,
    )


def explain_document(engine: Engine, request: SimpleRequest) -> dict[str, Any]:
    """What each rule of the active phase would do with ``request`` next (changes nothing)."""
    verdicts = engine.explain(request)
    fires = next((v.rule for v in verdicts if v.fires), None)
    return {
        "scenario": engine.scenario.label,
        "source": engine.source,
        "phase": engine.phase,
        "seed": engine.seed,
        "paused": engine.paused,
        "verdicts": [asdict(v) for v in verdicts],
        "fires": fires,
        "asked": asked_faults(engine, request),
    }


def asked_faults(engine: Engine, request: SimpleRequest) -> dict[str, str] | None:
    """With ``request_faults``, what the request's ``X-Chaos-Fault`` header asks for:
    ``{"faults": summary}`` (given instead of the rules, to a client allowed to ask) or
    ``{"ignored": why}`` (the rules decide); None without the header or the switch."""
    values = request.header(asked.HEADER)
    if not engine.scenario.request_faults or not values:
        return None
    try:
        faults = asked.parse("; ".join(values))
    except asked.AskError as exc:
        return {"ignored": str(exc)}
    return {"faults": " + ".join(f.describe() for f in faults)}
