"""A resumed study's scheduler state is rebuilt from the recorded curves (``seed_scheduler``): ASHA's
rungs and the median rule's history, keyed by Optuna trial number, so a resumed trial meets the
same rungs it would have met without the interruption."""

from __future__ import annotations

import time

from ray.tune.schedulers import TrialScheduler

from orchestrator.run.schedulers import seed_scheduler
from orchestrator.run.schedulers._median_stopping import MedianStopping
from orchestrator.run.schedulers._successive_halving import AsyncSuccessiveHalving


class _Trial:
    def __init__(self, number: int):
        self.trial_id = f"tune-{number}-{time.monotonic_ns()}"
        self.config = {"_trial_number": number}


def test_asha_rungs_are_rebuilt_from_recorded_values():
    curves = {n: {1: 1.0 + n, 2: 0.9 + n, 3: 0.8 + n, 4: 0.7 + n} for n in range(6)}
    asha = AsyncSuccessiveHalving(time_attr="epoch", metric="val_loss", mode="min", max_t=8, grace_period=1, reduction_factor=2)
    seed_scheduler(asha, curves)
    newcomer = _Trial(10)
    asha.on_trial_add(None, newcomer)
    # Worse than most recorded trials at the first rung: stopped at once, as without the restart.
    assert asha.on_trial_result(None, newcomer, {"epoch": 1, "val_loss": 4.5}) == TrialScheduler.STOP
    good = _Trial(11)
    asha.on_trial_add(None, good)
    assert asha.on_trial_result(None, good, {"epoch": 1, "val_loss": 0.5}) == TrialScheduler.CONTINUE
    # A resumed trial (same Optuna number, new Tune trial) is not judged twice at rungs it passed.
    resumed = _Trial(0)
    asha.on_trial_add(None, resumed)
    assert asha.on_trial_result(None, resumed, {"epoch": 4, "val_loss": 0.7}) == TrialScheduler.CONTINUE


class _Controller:
    """What the median rule asks of Tune's controller when it has too few samples."""

    def get_live_trials(self) -> list:
        return []


def test_median_rule_history_is_rebuilt_and_a_resumed_trial_keeps_its_curve():
    curves = {n: {e: float(n) for e in range(1, 5)} for n in range(5)}
    rule = MedianStopping(time_attr="epoch", metric="val_loss", mode="min", grace_period=1,
                          min_samples_required=3)
    seed_scheduler(rule, curves)
    newcomer = _Trial(9)
    rule.on_trial_add(None, newcomer)
    assert rule.on_trial_result(None, newcomer, {"epoch": 2, "val_loss": 10.0}) == TrialScheduler.STOP
    resumed = _Trial(0)
    rule.on_trial_add(None, resumed)
    assert len(rule.results["optuna-0"]) == 4  # its own epochs 1-4, no longer a separate history entry
    assert set(rule.results) == {f"optuna-{n}" for n in (0, 1, 2, 3, 4, 9)}
    assert rule.on_trial_result(_Controller(), resumed, {"epoch": 5, "val_loss": 0.0}) == TrialScheduler.CONTINUE
