"""Asynchronous successive halving (ASHA; with several brackets, asynchronous HyperBand) on Ray
Tune's public scheduler interface, with state that can be rebuilt from a study's recorded curves.

The decisions are those of Ray Tune's ``AsyncHyperBandScheduler`` (same rungs, cutoff, bracket
choice), checked side by side in ``tests/unit/run/test_schedulers.py``; trials are keyed by their
Optuna trial number instead of their Ray trial id, so a trial that ``stepsize resume`` runs again
meets the rungs it reached before.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Mapping

import numpy as np
from ray.tune.schedulers import TrialScheduler

from orchestrator.errors import SpecError
from orchestrator.run.schedulers._base import ObjectiveScheduler, number_key, trial_key


class Bracket:
    """One bracket: rungs at ``grace_period * rf**(k + s)`` epochs, newest (highest) first, each
    holding the (signed) value every trial had when it reached the rung."""

    def __init__(self, grace_period: float, max_t: float, reduction_factor: float, s: int):
        self.reduction_factor = reduction_factor
        count = int(np.log(max_t / grace_period) / np.log(reduction_factor) - s + 1)
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (grace_period * reduction_factor ** (k + s), {}) for k in reversed(range(count))
        ]

    def cutoff(self, recorded: Mapping[str, float]) -> float | None:
        """The value a trial must reach at a rung to go on: the top ``1 / rf`` of those recorded."""
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.reduction_factor) * 100))

    def on_result(self, key: str, epoch: float, value: float) -> str:
        """Record ``value`` at the highest rung ``epoch`` reaches that the trial has not passed
        yet, and STOP it when it falls below that rung's cutoff."""
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if epoch < milestone or key in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and value < cutoff:
                action = TrialScheduler.STOP
            recorded[key] = value
            break
        return action


class AsyncSuccessiveHalving(ObjectiveScheduler):
    """ASHA over epochs (``time_attr``) with ``brackets`` brackets; trials past ``max_t`` stop.

    Args:
        metric, mode: the objective and whether it is minimised or maximised.
        max_t: the most epochs a trial trains.
        grace_period: the first rung, in epochs.
        reduction_factor: how many times fewer trials each rung lets through.
        brackets: 1 for ASHA; more for asynchronous HyperBand (a trial goes to a bracket at
            random, weighted toward brackets with more rungs, as Ray Tune does).
    """

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: float, reduction_factor: float,
                 brackets: int = 1, time_attr: str = "epoch"):
        if not (max_t > 0 and 0 < grace_period <= max_t and reduction_factor > 1 and brackets > 0):
            raise SpecError("scheduler", {"grace_period": grace_period, "max_epochs": max_t,
                                          "reduction_factor": reduction_factor, "brackets": brackets},
                            "0 < grace_period <= max_epochs, reduction_factor above 1 and at least 1 bracket")
        super().__init__(metric, mode)
        self.sign = 1.0 if mode == "max" else -1.0
        self.time_attr = time_attr
        self.max_t = max_t
        self.brackets = [Bracket(grace_period, max_t, reduction_factor, s) for s in range(brackets)]
        self.assigned: dict[str, Bracket] = {}  # live trial -> its bracket
        self.seeded: dict[str, Bracket] = {}  # recorded trial -> the bracket its history went into
        self.stopped = 0

    def seed(self, curves: Mapping[int, Mapping[int, float]]) -> None:
        """Record every trial's value at each rung it reached, as if its results had been seen."""
        for number, curve in curves.items():
            key = number_key(number)
            bracket = self.brackets[number % len(self.brackets)]
            self.seeded[key] = bracket
            for milestone, recorded in bracket.rungs:
                reached = sorted(epoch for epoch in curve if epoch >= milestone)
                if reached:
                    recorded[key] = self.sign * float(curve[reached[0]])

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        key = trial_key(trial)
        if key in self.seeded:
            self.assigned[key] = self.seeded[key]
            return
        sizes = np.array([len(b.rungs) for b in self.brackets])
        weights = np.e ** (sizes - sizes.max())
        self.assigned[key] = self.brackets[np.random.choice(len(self.brackets), p=weights / weights.sum())]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self.time_attr not in result or self.objective not in result:
            return TrialScheduler.CONTINUE
        if result[self.time_attr] >= self.max_t:
            action = TrialScheduler.STOP
        else:
            bracket = self.assigned[trial_key(trial)]
            action = bracket.on_result(trial_key(trial), result[self.time_attr], self.sign * result[self.objective])
        if action == TrialScheduler.STOP:
            self.stopped += 1
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        bracket = self.assigned.pop(trial_key(trial), None)
        if bracket is None or self.time_attr not in result or self.objective not in result:
            return
        bracket.on_result(trial_key(trial), result[self.time_attr], self.sign * result[self.objective])

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.assigned.pop(trial_key(trial), None)

    def debug_string(self) -> str:
        rungs = "\n".join(
            "Bracket: " + " | ".join(f"Iter {milestone:.3f}: {b.cutoff(recorded)}" for milestone, recorded in b.rungs)
            for b in self.brackets
        )
        return f"Using AsyncHyperBand: num_stopped={self.stopped}\n{rungs}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))


def hyperband_brackets(max_epochs: int, reduction_factor: float) -> int:
    """HyperBand's bracket count: s_max + 1 with s_max = floor(log_eta(max_epochs))."""
    return int(math.floor(math.log(max_epochs) / math.log(reduction_factor) + 1e-9)) + 1
