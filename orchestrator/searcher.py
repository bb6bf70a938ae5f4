"""A Ray Tune searcher backed by an Optuna study in persistent storage, through ask/tell.

Unlike Ray Tune's stock ``OptunaSearch``, a trial the scheduler stops early is told to Optuna
as PRUNED after every epoch's value was reported as an intermediate value, never as COMPLETE
with a partial value, so TPE ranks it by how far it got. Failed trials are told as FAIL.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from orchestrator.divergence import DIVERGED_KEY, PENALTY_KEY
from orchestrator.samplers import AskTellGridSampler
from orchestrator.spec import StudySpec
from orchestrator.trainable import TRIAL_NUMBER_KEY, apply_lr_scaling

EPOCH_KEY = "training_iteration"
# What Ray Tune adds to every result; the rest is what the workload reported.
_TUNE_KEYS = {
    "training_iteration", "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "pid", "done", "trial_id", "should_checkpoint", "checkpoint_dir_name",
}


@dataclass
class SearchProgress:
    """Running counts the progress view shows; kept by the searcher as trials end."""

    total: int
    started: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    diverged: int = 0
    failed: int = 0
    best_value: float | None = None
    best_number: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    first_result_at: float | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


class OptunaStudySearcher(Searcher):
    """Suggest configurations from ``study`` and tell it how each trial ended.

    Args:
        study: the study, loaded from its storage; only the driver touches it.
        spec: the validated study spec (search space, objective, budget).
        max_new_trials: how many trials this run may start.
    """

    def __init__(self, study: optuna.Study, spec: StudySpec, max_new_trials: int):
        super().__init__(metric=spec.objective.metric, mode=spec.objective.mode)
        self._study = study
        self._space = spec.search_space
        self._fixed = spec.search_space.fixed_values()
        self._max_epochs = spec.budget.max_epochs
        self._max_new_trials = max_new_trials
        self._lr_scaling = spec.lr_scaling
        self._live: dict[str, optuna.Trial] = {}
        self._last_told_epoch: dict[str, int] = {}
        self._failed: dict[str, optuna.Trial] = {}
        self._worst: float | None = None  # worst finite value reported: the divergence penalty
        self.progress = SearchProgress(total=max_new_trials)

    # -- Ray Tune Searcher interface -------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.progress.started >= self._max_new_trials or self._grid_exhausted():
            return Searcher.FINISHED
        trial = self._study.ask()
        config = self._space.suggest(trial)
        trial.set_user_attr("ray_trial_id", trial_id)
        scaled = apply_lr_scaling(config, self._lr_scaling.rule, self._lr_scaling.reference_batch_size)
        if "base_learning_rate" in scaled:
            trial.set_user_attr("effective_learning_rate", scaled["learning_rate"])
        self._live[trial_id] = trial
        self.progress.started += 1
        self.progress.running += 1
        return {**config, TRIAL_NUMBER_KEY: trial.number}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self._live:
            return
        told_before = self._last_told_epoch.get(trial_id, 0)
        if result:
            self._report(trial_id, result)  # a result that made the scheduler stop the trial
        trial = self._live.pop(trial_id)
        self.progress.running -= 1
        epochs = self._last_told_epoch.pop(trial_id, 0)
        trial.set_user_attr("epochs", epochs)
        if result:
            trial.set_user_attr("final_metrics", reported_metrics(result))
        value = result.get(self._metric) if result else None
        if error:
            self._failed[trial_id] = trial  # told once FailureRelay brings the error text
        elif epochs == 0:
            self._tell(trial, TrialState.FAIL, "failed: ended before its first report")
        elif result and (result.get(DIVERGED_KEY) or ("done" in result and not _finite(value))):
            reason = result.get("diverged_reason") or f"{self._metric} became {value}"
            trial.set_user_attr("diverged", True)
            self._tell(trial, TrialState.PRUNED, f"diverged in epoch {epochs}: {reason}")
            self.progress.diverged += 1
        elif result and result.get("done") and (epochs >= self._max_epochs or epochs == told_before):
            # Reached the epoch budget, or the workload returned on its own: Tune repeats the
            # last result (already told) with done=True. A scheduler stop brings a new result.
            self._tell(trial, TrialState.COMPLETE, "completed", float(value))
        elif result and result.get("done"):
            self._tell(trial, TrialState.PRUNED, f"pruned at epoch {epochs}")
        else:
            self._tell(trial, TrialState.PRUNED, f"stopped at epoch {epochs} when the study ended")

    # -- helpers ----------------------------------------------------------------------------
    def tell_failure(self, trial_id: str, message: str) -> None:
        """Tell a trial that raised as FAIL, keeping its error text on the Optuna trial."""
        trial = self._failed.pop(trial_id, None)
        if trial is not None:
            trial.set_user_attr("error", message[-4000:])
            self._tell(trial, TrialState.FAIL, "failed: " + (message.strip().splitlines() or ["error"])[-1][:300])

    def _report(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._live.get(trial_id)
        epoch = result.get(EPOCH_KEY)
        value = result.get(self._metric)
        if trial is None or epoch is None or epoch <= self._last_told_epoch.get(trial_id, 0):
            return
        self._last_told_epoch[trial_id] = int(epoch)
        if self.progress.first_result_at is None:
            self.progress.first_result_at = time.monotonic()
        if result.get(DIVERGED_KEY) or not _finite(value):
            # Rank a diverged trial with the worst value seen so far (or the trial's own penalty)
            # so TPE counts its region as bad rather than ignoring it as a failure.
            fallback = result.get(PENALTY_KEY)
            value = self._worst if self._worst is not None else fallback if _finite(fallback) else None
            if value is None:
                return
        else:
            worse = self._worst is None or (value > self._worst if self._mode == "min" else value < self._worst)
            if worse:
                self._worst = float(value)
        trial.report(float(value), int(epoch))

    def _tell(self, trial: optuna.Trial, state: TrialState, reason: str, value: float | None = None) -> None:
        trial.set_user_attr("stop_reason", reason)
        self._study.tell(trial, value, state=state)
        progress = self.progress
        if state == TrialState.COMPLETE:
            progress.complete += 1
            better = progress.best_value is None or (
                value < progress.best_value if self._mode == "min" else value > progress.best_value
            )
            if better:
                progress.best_value, progress.best_number = value, trial.number
        elif state == TrialState.PRUNED:
            progress.pruned += 1
        else:
            progress.failed += 1

    def _grid_exhausted(self) -> bool:
        sampler = self._study.sampler
        return isinstance(sampler, AskTellGridSampler) and sampler.is_exhausted(self._study)

    def end_live_trials(self) -> None:
        """After Tune returns: trials still live (time limit, interruption) end as PRUNED, or
        FAIL when they never reported; failures whose text never came are told as such."""
        for trial_id in list(self._live):
            self.on_trial_complete(trial_id, result=None)
        for trial_id in list(self._failed):
            self.tell_failure(trial_id, "the trial's worker failed")


class FailureRelay(Callback):
    """Hands a failed trial's error text to the searcher (Tune gives it to callbacks only)."""

    def __init__(self, searcher: OptunaStudySearcher):
        self._searcher = searcher

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message = _read_error_file(trial) or "the workload raised"
        self._searcher.tell_failure(trial.trial_id, message)


def _read_error_file(trial: Any) -> str | None:
    path = getattr(trial, "error_file", None)
    try:
        return open(path).read() if path else None
    except OSError:
        return None


def reported_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics a workload reported in one Tune result (Tune's own keys dropped)."""
    return {
        key: value
        for key, value in result.items()
        if key not in _TUNE_KEYS
        and not key.startswith("config/")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
