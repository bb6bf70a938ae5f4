"""A Ray Tune searcher backed by an Optuna study in persistent storage, through ask/tell.

Unlike Ray Tune's stock ``OptunaSearch``, a trial the scheduler stops early is told to Optuna
as PRUNED after every epoch's value was reported as an intermediate value, never as COMPLETE
with a partial value, so TPE ranks it by how far it got. Failed trials are told as FAIL.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from orchestrator.errors import ObjectiveNotReported
from orchestrator.keys import TUNE_RESULT_KEYS, Config, Result, TrialAttr
from orchestrator.run.epoch_budget import EpochLedger, budget_stop_reason
from orchestrator.run.progress import SearchProgress
from orchestrator.spec import StudySpec
from orchestrator.study.samplers import AskTellGridSampler
from orchestrator.study.samplers.rung_model import RungModelSampler
from orchestrator.study.summary import last_line, spent_epochs
from orchestrator.training.lr_scaling import apply_lr_scaling

# Keys of a result that are not metrics the workload reported.
_NOT_REPORTED = TUNE_RESULT_KEYS | {Result.TRIAL_FAILED}


@dataclass(frozen=True)
class ResumeTicket:
    """A trial that was running when the study's driver stopped, to be run again as itself.

    ``trial_id`` is the storage's id of the trial; ``config`` is what the trainable gets (with the
    trial number and, when one was found, the checkpoint folder to continue from); ``last_epoch``
    the last epoch Optuna was told; ``charged_epochs`` the epochs it trained before (what
    ``budget.epochs`` counted for it).
    """

    number: int
    trial_id: int
    config: dict[str, Any]
    last_epoch: int
    checkpoint_epoch: int | None = None
    charged_epochs: int = 0


class OptunaStudySearcher(Searcher):
    """Suggest configurations from ``study`` and tell it how each trial ended.

    Args:
        study: the study, loaded from its storage; only the driver touches it.
        spec: the validated study spec (search space, objective, budget).
        max_new_trials: how many new trials this run may ask the sampler for.
        resumed: trials that were running when the study was interrupted; they are handed to
            Tune first, under their own Optuna trial numbers.

    Every epoch trained is charged to its trial (:meth:`charge`; :mod:`~orchestrator.run.epoch_budget`)
    and kept on it when it is told; once ``budget.epochs`` is spent no new trial is asked.
    """

    def __init__(
        self, study: optuna.Study, spec: StudySpec, max_new_trials: int, resumed: list[ResumeTicket] | None = None
    ):
        super().__init__(metric=spec.objective.metric, mode=spec.objective.mode)
        self._study = study
        self._space = spec.search_space
        self._max_epochs = spec.budget.max_epochs
        self._max_new_trials = max_new_trials
        self._lr_scaling = spec.lr_scaling
        self._live: dict[str, optuna.Trial] = {}
        self._last_told_epoch: dict[str, int] = {}
        self._failed: dict[str, optuna.Trial] = {}
        self._attempts: dict[str, int] = {}  # trial id -> runs so far, for trials Ray retried
        self._worst: float | None = None  # worst finite value reported: the divergence penalty
        self._resume_queue = list(resumed or [])
        self._asked = 0
        ledger = EpochLedger(spec.budget.epochs, per_trial={t.number: t.charged_epochs for t in self._resume_queue})
        if spec.budget.epochs is not None:
            ledger.before = spent_epochs(study.get_trials(deepcopy=False))
        self.progress = SearchProgress(total=max_new_trials + len(self._resume_queue), epochs=ledger,
                                       trials_capped=not spec.budget.trials_from_epochs)
        self.told: dict[int, tuple[str, str]] = {}  # trial number -> (Optuna state, stop reason) as told
        self.contract_error: ObjectiveNotReported | None = None  # the objective was not reported
        self.interrupted = False  # set on Ctrl-C: live trials stay RUNNING, for resume
        self.on_failure: Callable[[int, str], None] | None = None  # (trial number, error text) as told FAIL

    # Tune pickles its search algorithm into the experiment folder. The study (whose storage
    # holds the URL, password included) stays out: stepsize resumes from the Optuna storage, never
    # from Tune's state, and an unpickled copy suggests nothing.
    def __getstate__(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Searcher.__init__(self, metric=state["metric"], mode=state["mode"])
        self._study = None
        self._live, self._last_told_epoch, self._failed, self._attempts = {}, {}, {}, {}
        self._resume_queue, self._asked, self._max_new_trials = [], 0, 0
        self.progress = SearchProgress(total=0)
        self.told = {}
        self.contract_error, self.interrupted, self.on_failure = None, False, None

    # -- Ray Tune Searcher interface -------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.progress.epochs.exhausted:
            self._end_queued_at_budget()
            return Searcher.FINISHED
        if self._resume_queue:
            return self._resume(trial_id, self._resume_queue.pop(0))
        if self._asked >= self._max_new_trials or self._grid_exhausted():
            return Searcher.FINISHED
        began = time.perf_counter()
        self._asked += 1
        trial = self._study.ask()
        config = self._space.suggest(trial)
        trial.set_user_attr(TrialAttr.RAY_TRIAL_ID, trial_id)
        scaled = apply_lr_scaling(config, self._lr_scaling.rule, self._lr_scaling.reference_batch_size)
        if Config.BASE_LR in scaled:
            trial.set_user_attr(TrialAttr.EFFECTIVE_LR, scaled["learning_rate"])
        rung = self._proposing_rung(trial.number)
        if rung is not None:
            trial.set_user_attr(TrialAttr.RUNG_MODEL_EPOCH, rung)
            config = {**config, Config.RUNG_MODEL_EPOCH: rung}
            self.progress.rung_model_epoch = rung
        self._live[trial_id] = trial
        self.progress.started += 1
        self.progress.running += 1
        self.progress.suggest_seconds.append(time.perf_counter() - began)
        return {**config, Config.TRIAL_NUMBER: trial.number}

    def _proposing_rung(self, number: int) -> int | None:
        sampler = self._study.sampler
        return sampler.proposing_rung(number) if isinstance(sampler, RungModelSampler) else None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if result.get(Result.LIMIT_EXCEEDED) and trial_id in self._live:
            self._end_over_limit(trial_id, result)
            return
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self._live:
            return
        if self.contract_error is not None and not error:
            self._stop_for_contract(trial_id)
            return
        if result and result.get(Result.LIMIT_EXCEEDED):
            self._end_over_limit(trial_id, result)
            return
        told_before = self._last_told_epoch.get(trial_id, 0)
        if result:
            self._report(trial_id, result)  # a result that made the scheduler stop the trial
        trial = self._live.pop(trial_id)
        self.progress.running -= 1
        epochs = self._last_told_epoch.pop(trial_id, 0)
        trial.set_user_attr(TrialAttr.EPOCHS, epochs)
        if result:
            trial.set_user_attr(TrialAttr.FINAL_METRICS, reported_metrics(result))
        value = result.get(self.metric) if result else None
        if error:
            self._failed[trial_id] = trial  # told once FailureRelay brings the error text
        elif result and result.get(Result.TRIAL_FAILED):
            self._failed[trial_id] = trial
            self.tell_failure(trial_id, str(result.get(Result.ERROR) or "the workload raised"))
        elif epochs == 0:
            self._tell(trial, TrialState.FAIL, "failed: ended before its first report")
            if self.on_failure is not None:
                self.on_failure(trial.number, "the workload returned without reporting an epoch: call "
                                              "trial.report(...) with its metrics once per epoch")
        elif result and (result.get(Result.DIVERGED) or (Result.DONE in result and not _finite(value))):
            reason = result.get(Result.DIVERGED_REASON) or f"{self.metric} became {value}"
            trial.set_user_attr(TrialAttr.DIVERGED, True)
            self._tell(trial, TrialState.PRUNED, f"diverged in epoch {epochs}: {reason}")
            self.progress.diverged += 1
        elif result and result.get(Result.DONE) and epochs >= self._max_epochs:
            self._tell(trial, TrialState.COMPLETE, "completed", float(value))  # trained all its epochs
        elif trial_id in self.progress.epochs.stopped:
            self._tell(trial, TrialState.PRUNED, budget_stop_reason(epochs))
        elif result and result.get(Result.DONE) and epochs == told_before:
            # The workload returned on its own: Tune repeats the last result (already told) with
            # done=True. A scheduler stop brings a new result.
            self._tell(trial, TrialState.COMPLETE, "completed", float(value))
        elif result and result.get(Result.DONE):
            self._tell(trial, TrialState.PRUNED, f"pruned at epoch {epochs}")
        else:
            self._tell(trial, TrialState.PRUNED, f"stopped at epoch {epochs} when the time limit was reached")

    def charge(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Charge ``result`` to its trial (call once per result Ray Tune processes: the stopper
        does); True when the trial is to stop at it because the epoch budget is spent."""
        trial = self._live.get(trial_id)
        return trial is not None and self.progress.epochs.charge(trial.number, trial_id, result)

    def check_objective(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Whether ``result`` keeps the objective contract (it carries the objective metric, or
        says the trial failed or diverged). The first result that does not stops the study: its
        trial is told FAIL with an :class:`ObjectiveNotReported` naming the keys it did report."""
        value = result.get(self.metric)
        number_given = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (number_given or Result.EPOCH not in result or result.get(Result.TRIAL_FAILED)
                or result.get(Result.DIVERGED) or trial_id not in self._live):
            return True
        if self.contract_error is None:
            number = self._live[trial_id].number
            given = None if self.metric not in result else value
            self.contract_error = ObjectiveNotReported(self.metric, number, int(result[Result.EPOCH]),
                                                       sorted(reported_metrics(result)), self._study.study_name,
                                                       given=repr(given) if self.metric in result else None)
        self._stop_for_contract(trial_id)
        return False

    def _end_over_limit(self, trial_id: str, result: dict[str, Any]) -> None:
        """A trial its worker stopped at a per-trial limit: PRUNED with a penalty value (the worst
        value seen, as for a diverged trial) so the sampler steers away from its region; FAIL when
        there is nothing to rank it by. The stop reason says which limit."""
        trial = self._live.pop(trial_id)
        self.progress.running -= 1
        self.progress.over_limit += 1
        epochs = self._last_told_epoch.pop(trial_id, 0)
        reason = str(result.get(Result.LIMIT_REASON) or "exceeded a per-trial limit")
        trial.set_user_attr(TrialAttr.EPOCHS, epochs)
        trial.set_user_attr(TrialAttr.FINAL_METRICS, reported_metrics(result))
        trial.set_user_attr(TrialAttr.LIMIT_EXCEEDED, reason)
        trial.set_user_attr(TrialAttr.ERROR, reason)
        fallback = result.get(Result.DIVERGENCE_PENALTY)
        penalty = self._worst if self._worst is not None else fallback if _finite(fallback) else None
        if penalty is None:
            self._tell(trial, TrialState.FAIL, reason)
        else:
            trial.report(float(penalty), epochs + 1)
            self._tell(trial, TrialState.PRUNED, reason)
        if self.on_failure is not None:
            self.on_failure(trial.number, reason)

    def _stop_for_contract(self, trial_id: str) -> None:
        trial = self._live.pop(trial_id)
        self._last_told_epoch.pop(trial_id, None)
        self.progress.running -= 1
        trial.set_user_attr(TrialAttr.ERROR, str(self.contract_error))
        self._tell(trial, TrialState.FAIL, f"failed: {self.metric} was never reported (objective.metric)")

    # -- helpers ----------------------------------------------------------------------------
    def _resume(self, trial_id: str, ticket: ResumeTicket) -> dict[str, Any]:
        trial = optuna.trial.Trial(self._study, ticket.trial_id)
        trial.set_user_attr(TrialAttr.RAY_TRIAL_ID, trial_id)
        trial.set_user_attr(TrialAttr.RESUMED_FROM_EPOCH, ticket.checkpoint_epoch or 0)
        self._live[trial_id] = trial
        self._last_told_epoch[trial_id] = ticket.last_epoch
        self.progress.started += 1
        self.progress.running += 1
        self.progress.resumed += 1
        return dict(ticket.config)

    def note_retry(self, trial_id: str) -> None:
        """Ray Tune runs a trial again after its worker died: count the attempt on the trial
        (``user_attrs["attempts"]``, shown by ``stepsize status``)."""
        trial = self._live.get(trial_id)
        if trial is not None:
            self._attempts[trial_id] = self._attempts.get(trial_id, 1) + 1
            trial.set_user_attr(TrialAttr.ATTEMPTS, self._attempts[trial_id])

    def tell_failure(self, trial_id: str, message: str) -> None:
        """Tell a trial that raised as FAIL, keeping its error text on the Optuna trial."""
        trial = self._failed.pop(trial_id, None)
        if trial is not None:
            trial.set_user_attr(TrialAttr.ERROR, message[-4000:])
            self._tell(trial, TrialState.FAIL, "failed: " + last_line(message)[:300])
            if self.on_failure is not None:
                self.on_failure(trial.number, message)

    def _report(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._live.get(trial_id)
        epoch = result.get(Result.EPOCH)
        value = result.get(self.metric)
        if trial is None or epoch is None or result.get(Result.TRIAL_FAILED) or epoch <= self._last_told_epoch.get(trial_id, 0):
            return
        self._last_told_epoch[trial_id] = int(epoch)
        if self.progress.first_result_at is None:
            self.progress.first_result_at = time.monotonic()
        if result.get(Result.DIVERGED) or not _finite(value):
            # Rank a diverged trial with the worst value seen so far (or the trial's own penalty)
            # so TPE counts its region as bad rather than ignoring it as a failure.
            fallback = result.get(Result.DIVERGENCE_PENALTY)
            value = self._worst if self._worst is not None else fallback if _finite(fallback) else None
            if value is None:
                return
        else:
            worse = self._worst is None or (value > self._worst if self.mode == "min" else value < self._worst)
            if worse:
                self._worst = float(value)
        trial.report(float(value), int(epoch))

    def _tell(self, trial: optuna.Trial, state: TrialState, reason: str, value: float | None = None) -> None:
        trial.set_user_attr(TrialAttr.STOP_REASON, reason)
        trial.set_user_attr(TrialAttr.CHARGED_EPOCHS, self.progress.epochs.settle(trial.number))
        self._study.tell(trial, value, state=state)
        self.told[trial.number] = (state.name, reason)
        progress = self.progress
        if state == TrialState.COMPLETE:
            progress.complete += 1
            better = progress.best_value is None or (
                value < progress.best_value if self.mode == "min" else value > progress.best_value
            )
            if better:
                progress.best_value, progress.best_number = value, trial.number
        elif state == TrialState.PRUNED:
            progress.pruned += 1
        else:
            progress.failed += 1

    def _end_queued_at_budget(self) -> None:
        """Interrupted trials not handed to Tune yet when the epoch budget is spent end PRUNED."""
        while self._resume_queue:
            ticket = self._resume_queue.pop(0)
            self.progress.total -= 1
            trial = optuna.trial.Trial(self._study, ticket.trial_id)
            trial.set_user_attr(TrialAttr.EPOCHS, ticket.last_epoch)
            self._tell(trial, TrialState.PRUNED, budget_stop_reason(ticket.last_epoch))

    def _grid_exhausted(self) -> bool:
        sampler = self._study.sampler
        return isinstance(sampler, AskTellGridSampler) and sampler.is_exhausted(self._study)

    def end_live_trials(self, interrupted: bool = False) -> int:
        """After Tune returns: failures whose text never came are told FAIL. Trials still live
        end as PRUNED (or FAIL when they never reported) when the study's time ran out; after an
        interruption they stay RUNNING, for ``stepsize resume`` to run again. Returns how many
        were left running."""
        for trial_id in list(self._failed):
            self.tell_failure(trial_id, "the trial's worker failed")
        if interrupted:
            left = len(self._live)
            self._live.clear()
            return left
        for trial_id in list(self._live):
            self.on_trial_complete(trial_id, result=None)
        return 0


class FailureRelay(Callback):
    """Hands a failed trial's error text to the searcher (Tune gives it to callbacks only)."""

    def __init__(self, searcher: OptunaStudySearcher):
        self._searcher = searcher

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message = _read_error_file(trial) or "the workload raised"
        self._searcher.tell_failure(trial.trial_id, message)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._searcher.note_retry(trial.trial_id)  # its worker died; Ray runs it again


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
        if key not in _NOT_REPORTED
        and not key.startswith("config/")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
