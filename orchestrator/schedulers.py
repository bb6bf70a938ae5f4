"""Build the Ray Tune trial scheduler a study spec names: asha, hyperband, median or none.

Every scheduler measures time in the epochs the workload reports (``epoch``), so a trial resumed
from a checkpoint at epoch k goes on at k + 1 in the scheduler's eyes too. ``hyperband`` is the
asynchronous variant (several ASHA brackets of different aggressiveness), which keeps every slot
busy with concurrent trials and never has to pause one.

Ray Tune does not restore a scheduler's state when a study resumes. Ours is rebuilt from the
study's recorded intermediate values instead: :func:`seed_scheduler` gives ASHA's rungs and the
median rule's history every epoch the study's trials reported, keyed by Optuna trial number, so a
resumed trial is judged against the same rungs it would have met without the interruption.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ray.tune.schedulers import (
    AsyncHyperBandScheduler,
    FIFOScheduler,
    MedianStoppingRule,
    TrialScheduler,
)

from orchestrator.spec import StudySpec

TIME_ATTR = "epoch"
_TRIAL_NUMBER_KEY = "_trial_number"  # as orchestrator.trainable puts it in each trial's config

Curves = Mapping[int, Mapping[int, float]]  # Optuna trial number -> {epoch: objective value}


def hyperband_brackets(max_epochs: int, reduction_factor: float) -> int:
    """HyperBand's bracket count: s_max + 1 with s_max = floor(log_eta(max_epochs))."""
    return int(math.floor(math.log(max_epochs) / math.log(reduction_factor) + 1e-9)) + 1


def build_trial_scheduler(spec: StudySpec) -> TrialScheduler:
    """The early-stopping scheduler for ``spec`` (metric and mode from its objective)."""
    name, opts = spec.scheduler.name, spec.scheduler.options
    metric, mode = spec.objective.metric, spec.objective.mode
    if name == "asha":
        return ResumableASHA(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            max_t=opts["max_epochs"],
            grace_period=opts["grace_period"],
            reduction_factor=opts["reduction_factor"],
            brackets=opts["brackets"],
        )
    if name == "hyperband":
        return ResumableASHA(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            max_t=opts["max_epochs"],
            grace_period=1,
            reduction_factor=opts["reduction_factor"],
            brackets=hyperband_brackets(opts["max_epochs"], opts["reduction_factor"]),
        )
    if name == "median":
        return ResumableMedianStopping(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            grace_period=opts["grace_period"],
            min_samples_required=opts["min_samples_required"],
        )
    return FIFOScheduler()


def seed_scheduler(scheduler: TrialScheduler, curves: Curves) -> None:
    """Give ``scheduler`` the study's recorded curves (no-op for schedulers without state)."""
    if isinstance(scheduler, (ResumableASHA, ResumableMedianStopping)):
        scheduler.seed(curves)


def _number(trial: Any) -> int | None:
    number = (getattr(trial, "config", None) or {}).get(_TRIAL_NUMBER_KEY)
    return None if number is None else int(number)


class _ByNumber:
    """A trial as ASHA's brackets see it: identified by its Optuna trial number, which stays the
    same when ``stepsize resume`` runs it again as a new Ray Tune trial."""

    __slots__ = ("trial_id",)

    def __init__(self, trial: Any):
        number = _number(trial)
        self.trial_id = f"optuna-{number}" if number is not None else str(trial.trial_id)


class ResumableASHA(AsyncHyperBandScheduler):
    """Ray Tune's ASHA / asynchronous HyperBand with rungs keyed by Optuna trial number, so that
    :meth:`seed` can rebuild them from a study's recorded intermediate values."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._seeded: dict[str, Any] = {}  # trial key -> the bracket its history went into

    def seed(self, curves: Curves) -> None:
        """Record every trial's value at each rung it reached, as if Tune had seen it."""
        for number, curve in curves.items():
            key = f"optuna-{number}"
            bracket = self._brackets[number % len(self._brackets)]
            self._seeded[key] = bracket
            for milestone, recorded in bracket._rungs:
                reached = sorted(epoch for epoch in curve if epoch >= milestone)
                if reached:
                    recorded[key] = self._metric_op * float(curve[reached[0]])

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        keyed = _ByNumber(trial)
        if keyed.trial_id in self._seeded:
            self._trial_info[keyed.trial_id] = self._seeded[keyed.trial_id]
        else:
            super().on_trial_add(tune_controller, keyed)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return super().on_trial_result(tune_controller, _ByNumber(trial), result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        keyed = _ByNumber(trial)
        if keyed.trial_id in self._trial_info:
            super().on_trial_complete(tune_controller, keyed, result)
            self._trial_info.pop(keyed.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._trial_info.pop(_ByNumber(trial).trial_id, None)


class _Recorded:
    """A trial of an earlier run of the study, as the median rule's history holds it."""

    def __init__(self, number: int):
        self.trial_id = f"optuna-{number}"


class ResumableMedianStopping(MedianStoppingRule):
    """Ray Tune's median stopping rule whose history can be rebuilt with :meth:`seed`."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._recorded: dict[int, _Recorded] = {}

    def seed(self, curves: Curves) -> None:
        """Add every recorded trial's curve to the history the medians are taken over."""
        for number, curve in curves.items():
            holder = self._recorded.setdefault(number, _Recorded(number))
            self._results[holder] = [
                {self._time_attr: epoch, self._metric: float(value)} for epoch, value in sorted(curve.items())
            ]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        number = _number(trial)
        holder = self._recorded.pop(number, None) if number is not None else None
        if holder is not None:  # a resumed trial continues its own recorded curve
            self._results[trial] = self._results.pop(holder)
