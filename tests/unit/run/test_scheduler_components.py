"""Schedulers built from a spec: which one each name builds, the ASHA knobs reaching it, HyperBand's
bracket count and ASHA's default grace period."""

from __future__ import annotations

import pytest
from ray.tune.schedulers import FIFOScheduler

from orchestrator.run.schedulers import build_trial_scheduler
from orchestrator.run.schedulers._median_stopping import MedianStopping
from orchestrator.run.schedulers._successive_halving import (
    AsyncSuccessiveHalving,
    hyperband_brackets,
)
from orchestrator.spec import spec_from_mapping


def test_asha_grace_period_defaults_to_three_epochs_capped_by_the_budget():
    assert spec_from_mapping({"name": "s"}).scheduler.options["grace_period"] == 3
    assert spec_from_mapping({"name": "s", "budget": {"max_epochs": 2}}).scheduler.options["grace_period"] == 2


@pytest.mark.parametrize(
    "scheduler, cls, brackets",
    [("asha", AsyncSuccessiveHalving, 1), ("hyperband", AsyncSuccessiveHalving, 4), ("median", MedianStopping, None),
     ("none", FIFOScheduler, None)],
)
def test_schedulers(scheduler, cls, brackets):
    spec = spec_from_mapping({"name": "s", "scheduler": scheduler, "budget": {"max_epochs": 27}})
    built = build_trial_scheduler(spec)
    assert isinstance(built, cls)
    if brackets is not None:  # ASHA is successive halving with one bracket, HyperBand with several
        assert len(built.brackets) == brackets


def test_asha_knobs_reach_the_scheduler():
    spec = spec_from_mapping(
        {"name": "s", "scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 4, "max_epochs": 16},
         "budget": {"max_epochs": 20}}
    )
    scheduler = build_trial_scheduler(spec)
    assert scheduler.brackets[0].reduction_factor == 4 and scheduler.max_t == 16
    milestones = sorted(milestone for milestone, _ in scheduler.brackets[0].rungs)
    assert milestones == [2, 8]  # grace_period * reduction_factor^k below max_epochs


def test_hyperband_bracket_count():
    assert hyperband_brackets(27, 3) == 4
    assert hyperband_brackets(20, 3) == 3
    assert hyperband_brackets(1, 3) == 1
