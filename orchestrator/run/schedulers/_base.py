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
    is judged) built for one objective ``metric`` and ``mode`` (``min`` or ``max``)."""

    def __init__(self, metric: str, mode: str):
        if mode not in ("min", "max"):
            raise SpecError("objective.mode", mode, "min or max")
        super().__init__()
        self.objective = metric
        self.mode = mode

    @property
    def metric(self) -> str:
        return self.objective

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept Tune's search properties only when they agree with the objective built in."""
        return metric in (None, self.objective) and mode in (None, self.mode)
