"""The median stopping rule on Ray Tune's public scheduler interface, with a history that can be
rebuilt from a study's recorded curves.

A trial is stopped when its best value so far is worse than the median of the other trials'
running means over the same epochs. The decisions are those of Ray Tune's ``MedianStoppingRule``
(checked side by side in ``tests/unit/run/test_schedulers.py``); trials are keyed by their Optuna
trial number, so a resumed trial continues its own recorded curve.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Mapping

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.run.schedulers._base import ObjectiveScheduler, number_key, trial_key


class MedianStopping(ObjectiveScheduler):
    """Stop a trial whose best value by epoch ``t`` is worse than the median of the running means
    of the other trials that reached ``t``, once ``grace_period`` epochs have passed and at least
    ``min_samples_required`` such trials exist; with fewer, a trial yields its slot to a waiting one
    (PAUSE), as Ray Tune's rule does."""

    def __init__(self, *, metric: str, mode: str, grace_period: float, min_samples_required: int,
                 time_attr: str = "epoch", min_time_slice: float = 0):
        super().__init__(metric, mode)
        self.best_of = max if mode == "max" else min
        self.time_attr = time_attr
        self.grace_period = grace_period
        self.min_samples_required = min_samples_required
        self.min_time_slice = min_time_slice
        self.results: dict[str, list[dict]] = collections.defaultdict(list)  # trial key -> its results
        self.stopped: set[str] = set()
        self.last_pause: dict[str, float] = collections.defaultdict(lambda: float("-inf"))

    def seed(self, curves: Mapping[int, Mapping[int, float]]) -> None:
        """Add every recorded trial's curve to the history the medians are taken over."""
        for number, curve in curves.items():
            self.results[number_key(number)] = [
                {self.time_attr: epoch, self.objective: float(value)} for epoch, value in sorted(curve.items())
            ]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self.time_attr not in result or self.objective not in result:
            return TrialScheduler.CONTINUE
        key = trial_key(trial)
        time = result[self.time_attr]
        self.results[key].append(result)
        if time < self.grace_period:
            return TrialScheduler.CONTINUE
        others = [k for k, results in self.results.items() if k != key and results[-1][self.time_attr] >= time]
        means = [mean for mean in (self._running_mean(k, time) for k in others) if np.isfinite(mean)]
        if len(means) < self.min_samples_required:
            return self._on_insufficient_samples(tune_controller, key, time)
        best = self.best_of(r[self.objective] for r in self.results[key])
        if self.best_of(np.median(means), best) != best:
            self.stopped.add(key)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self.results[trial_key(trial)].append(result)

    def _on_insufficient_samples(self, tune_controller: Any, key: str, time: float) -> str:
        if tune_controller is None or time - self.last_pause[key] <= self.min_time_slice:
            return TrialScheduler.CONTINUE
        waiting = [t for t in tune_controller.get_live_trials() if t.status in (Trial.PENDING, Trial.PAUSED)]
        if not waiting:
            return TrialScheduler.CONTINUE
        self.last_pause[key] = time
        return TrialScheduler.PAUSE

    def _running_mean(self, key: str, time: float) -> float:
        scoped = [r[self.objective] for r in self.results[key] if self.grace_period <= r[self.time_attr] <= time]
        return float(np.mean(scoped)) if scoped else math.nan

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self.stopped)}."
