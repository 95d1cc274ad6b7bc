"""Seeds: the most specific wins (DESIGN.md, "Decisions recorded"; issue 22 item 12).

A seed given with the apply, over the run's (--seed / --chaos-seed), over the
scenario's own ``seed:``, over a random one; the engine says which (``seed_source``).
"""

from __future__ import annotations

import pytest

from chaosproxy.core import scenario as sc
from chaosproxy.core.engine import Engine

SEEDED = sc.load_text("seed: 7\nrules: [{fault: {type: error}, probability: 0.5}]\n")
UNSEEDED = sc.load_text("rules: [{fault: {type: error}, probability: 0.5}]\n")


@pytest.mark.parametrize(
    ("run", "scenario", "apply", "seed", "source"),
    [
        (1, SEEDED, 5, 5, "apply"),
        (None, SEEDED, 5, 5, "apply"),
        (1, SEEDED, None, 1, "run"),
        (None, SEEDED, None, 7, "scenario"),
        (None, UNSEEDED, None, None, "random"),
    ],
)
def test_the_most_specific_seed_wins(
    run: int | None, scenario: sc.Scenario, apply: int | None, seed: int | None, source: str
) -> None:
    engine = Engine(seed=run)
    engine.apply(scenario, "x.yaml", seed=apply)
    assert engine.seed_source == source
    if seed is not None:
        assert engine.seed == seed
    assert engine.stats()["seed"] == engine.seed
    assert engine.stats()["seed_source"] == source


def test_a_seed_given_with_one_apply_does_not_stick_to_the_next() -> None:
    engine = Engine(seed=1)
    engine.apply(SEEDED, seed=5)
    assert (engine.seed, engine.seed_source) == (5, "apply")
    engine.apply(SEEDED)
    assert (engine.seed, engine.seed_source) == (1, "run")


def test_the_constructor_seed_is_the_runs_and_the_scenario_seed_otherwise() -> None:
    assert (Engine(SEEDED, seed=3).seed, Engine(SEEDED, seed=3).seed_source) == (3, "run")
    assert (Engine(SEEDED).seed, Engine(SEEDED).seed_source) == (7, "scenario")
    assert Engine(UNSEEDED).seed_source == "random"
