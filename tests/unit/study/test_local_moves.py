"""Local moves: steps from a study's best trials, clipped to the space, so the edges are reached."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from orchestrator.study.samplers.local_moves import PARENTS, from_unit, local_move, perturb, to_unit

optuna.logging.set_verbosity(optuna.logging.ERROR)
LOG_LR = FloatDistribution(1e-4, 1e-1, log=True)
LAYERS = IntDistribution(1, 5)
UNITS = IntDistribution(64, 1024, log=True)
DROPOUT = FloatDistribution(0.0, 1.0, step=0.25)


@pytest.mark.parametrize("distribution, value, unit", [
    (LOG_LR, 1e-4, 0.0), (LOG_LR, 1e-1, 1.0), (LOG_LR, math.sqrt(1e-5), 0.5),  # log scale: the geometric middle
    (LAYERS, 3, 0.5), (UNITS, 256, math.log(4) / math.log(16)), (DROPOUT, 0.75, 0.75),
])
def test_a_value_and_its_place_in_the_range_map_both_ways(distribution, value, unit):
    assert to_unit(value, distribution) == pytest.approx(unit)
    assert from_unit(unit, distribution) == pytest.approx(value)


def test_values_past_the_range_land_on_its_edge_and_keep_the_step_and_type():
    assert from_unit(-0.3, LOG_LR) == pytest.approx(1e-4) and from_unit(1.7, LOG_LR) == pytest.approx(1e-1)
    assert from_unit(1.2, LAYERS) == 5 and isinstance(from_unit(0.4, LAYERS), int)
    assert from_unit(0.6, DROPOUT) == 0.5  # 0.6 rounds to the step 0.25 * 2


def test_a_step_from_near_an_edge_often_lands_on_it_and_never_past_it():
    space = {"lr": LOG_LR, "layers": LAYERS, "units": UNITS, "dropout": DROPOUT}
    near_top = {"lr": 0.08, "layers": 5, "units": 900, "dropout": 0.0}
    rng = np.random.default_rng(0)
    moves = [perturb(near_top, space, rng, 0.2) for _ in range(400)]
    for name, distribution in space.items():
        values = [m[name] for m in moves]
        assert all(distribution.low <= v <= distribution.high for v in values), name
    assert all(m["dropout"] in (0.0, 0.25, 0.5, 0.75, 1.0) for m in moves)  # on the step
    assert sum(m["lr"] == pytest.approx(1e-1) for m in moves) > 100  # clipped onto the edge, not only near it
    assert sum(m["dropout"] == 0.0 for m in moves) > 100
    assert all(isinstance(m["layers"], int) for m in moves)
    assert len({m["lr"] for m in moves}) > 100  # and spread around the start elsewhere


def test_a_categorical_keeps_its_value_mostly_and_is_redrawn_otherwise():
    space = {"optimizer": CategoricalDistribution(["sgd", "adam", "adamw"])}
    rng = np.random.default_rng(1)
    kept = sum(perturb({"optimizer": "adam"}, space, rng, 0.2)["optimizer"] == "adam" for _ in range(1000))
    assert 800 < kept < 900  # kept with 0.8, plus a third of the redraws


@pytest.mark.parametrize("direction, parents", [("maximize", range(10 - PARENTS, 10)), ("minimize", range(PARENTS))])
def test_a_move_starts_from_one_of_the_best_complete_trials(direction, parents):
    study = optuna.create_study(direction=direction)
    space = {"x": FloatDistribution(0.0, 9.0)}
    assert local_move(study, space, np.random.default_rng(0), 0.0) is None  # no complete trial yet
    for x in range(10):
        study.add_trial(optuna.trial.create_trial(params={"x": float(x)}, distributions=space, value=float(x)))
    study.add_trial(optuna.trial.create_trial(params={"x": 20.0 / 9}, distributions=space,
                                              state=optuna.trial.TrialState.RUNNING))
    rng = np.random.default_rng(0)
    starts = {local_move(study, space, rng, 0.0)["x"] for _ in range(200)}  # a step of 0: the parent itself
    assert starts == {float(x) for x in parents}
