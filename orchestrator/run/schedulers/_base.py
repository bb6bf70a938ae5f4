"""What stepsize's schedulers share: an objective and mode fixed when they are built, and trials
named by their Optuna trial number, which stays the same when ``stepsize resume`` runs a trial
again as a new Ray Tune trial."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import FIFOScheduler

from orchestrator.errors import SpecError
from orchestrator.keys import Config


def trial_key(trial: Any) -> str:
    """``optuna-N`` for the trial whose configuration carries Optuna trial number N, else the
    Ray trial id."""
    number = (getattr(trial, "config", None) or {}).get(Config.TRIAL_NUMBER)
    return number_key(int(number)) if number is not None else str(trial.trial_id)


def number_key(number: int) -> str:
    return f"optuna-{int(number)}"


class ObjectiveScheduler(FIFOScheduler):
    """A Ray Tune scheduler (public ``FIFOScheduler`` interface: trials run in order, each result
    is judged) built for one objective ``metric`` and ``mode`` (``min`` or ``max``).

    It picks the next trial to run as ``FIFOScheduler`` does (the first PENDING trial in the order
    trials were added, else the first PAUSED one) without walking every trial of the study at
    every step of Tune's loop: trials that ended (TERMINATED or ERROR, which Tune never runs
    again) are dropped from the ones it looks at, so the cost follows the live trials, not the
    thousands that ended. (A subclass that handles ``on_trial_error`` calls this class's too.)
    """

    def __init__(self, metric: str, mode: str):
        if mode not in ("min", "max"):
            raise SpecError("objective.mode", mode, "min or max")
        super().__init__()
        self.objective = metric
        self.mode = mode
        self._seen = 0  # how many of the controller's trials were looked at
        self._moved = 0  # trials Tune moved to the end of its list since (a retry: on_trial_error)
        self._waiting: dict[int, Any] = {}  # trials not ended, in the controller's order

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """``FIFOScheduler.choose_trial_to_run``'s choice, looking only at trials not ended."""
        from ray.tune.experiment import Trial

        trials = tune_controller.get_trials()
        if len(trials) < self._seen:  # another controller's trials: start again
            self._seen, self._waiting = 0, {}
        # New trials and retried ones (moved to the end) are all in the tail, in the list's order.
        for trial in trials[max(0, self._seen - self._moved):]:
            self._waiting.pop(id(trial), None)
            self._waiting[id(trial)] = trial
        self._seen, self._moved = len(trials), 0
        paused = None
        for key, trial in list(self._waiting.items()):
            if trial.status in (Trial.TERMINATED, Trial.ERROR):
                del self._waiting[key]
            elif trial.status == Trial.PENDING:
                return trial
            elif trial.status == Trial.PAUSED and paused is None:
                paused = trial
        return paused

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """Tune calls this before it moves a trial it retries to the end of its list."""
        self._moved += 1

    @property
    def metric(self) -> str:
        return self.objective

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept Tune's search properties only when they agree with the objective built in."""
        return metric in (None, self.objective) and mode in (None, self.mode)
