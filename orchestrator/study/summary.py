"""Where a study stands, read from its storage: trials by state, the best trial and the
configuration it trained with."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator.keys import TrialAttr
from orchestrator.spec import StudySpec
from orchestrator.study.driver_lock import active_driver

STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}  # an Optuna state as a summary line says it


@dataclass(frozen=True)
class TrialFailure:
    """A failed trial: its number, the last line of its error (type and message) and the whole
    text as stored (a traceback, at most its last 4,000 characters)."""

    number: int
    error: str
    text: str


@dataclass
class StudySummary:
    """Where a study stands: trials by state and the best trial so far."""

    name: str
    metric: str
    mode: str
    counts: dict[str, int]
    diverged: int = 0
    over_limit: int = 0  # stopped at a per-trial limit (limits:); listed among the failures
    best_number: int | None = None
    best_value: float | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, Any] = field(default_factory=dict)
    failures: list[TrialFailure] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)  # trial number -> runs, for trials Ray retried
    driver_active: bool = False  # a driver is running the study now; else RUNNING trials were interrupted
    epochs_spent: int = 0  # epochs trained over all trials, retried ones included (see charged_epochs)
    epoch_budget: int | None = None  # budget.epochs, when the study has one
    rung_model_trials: int = 0  # trials the rung model proposed (sampler.rung_model)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def interrupted(self) -> int:
        """Trials left RUNNING by a driver that stopped (resume runs them again)."""
        return 0 if self.driver_active else self.counts.get("RUNNING", 0)

    @property
    def finished(self) -> int:
        """Trials that ended: complete, pruned or failed."""
        return sum(self.counts.get(state, 0) for state in ("COMPLETE", "PRUNED", "FAIL"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.name,
            "trials": self.total,
            "states": dict(self.counts),
            "diverged": self.diverged,
            "over_limit": self.over_limit,
            "rung_model_trials": self.rung_model_trials,
            "interrupted": self.interrupted,
            "failures": [{"trial": f.number, "error": f.error} for f in self.failures],
            "attempts": {str(number): runs for number, runs in self.attempts.items()},
            "metric": self.metric,
            "mode": self.mode,
            "best": None
            if self.best_number is None
            else {"trial": self.best_number, "value": self.best_value, "config": self.best_config},
            **({"epochs": {"spent": self.epochs_spent, "budget": self.epoch_budget}}
               if self.epoch_budget is not None else {}),
        }


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial, or None when no trial has completed."""
    try:
        return study.best_trial
    except ValueError:
        return None


def trial_config(trial: FrozenTrial, spec: StudySpec) -> dict[str, Any]:
    """The configuration a trial trained with: sampled params plus the space's fixed values; with
    ``lr_scaling`` on, ``learning_rate`` is the effective rate for its batch size, the searched
    one is ``base_learning_rate`` and ``lr_scaling`` names the rule (``sqrt: base 0.1 at batch 256``)."""
    from orchestrator.training.lr_scaling import copyable_config

    config: dict[str, Any] = {}
    for param in spec.search_space.params:
        if param.name in trial.params:
            config[param.name] = trial.params[param.name]
        elif param.distribution is None and param.is_active(config):
            config[param.name] = param.value
    return copyable_config(config, spec.lr_scaling.rule, spec.lr_scaling.reference_batch_size)


def last_line(text: str) -> str:
    """The last non-empty line of an error text (for a traceback: the exception and its message)."""
    return (text.strip().splitlines() or ["error"])[-1].strip()


def charged_epochs(trial: FrozenTrial) -> int:
    """The epochs ``trial`` has trained, as ``budget.epochs`` counts them: what its driver charged
    when it told the trial (retried epochs included); for a trial not told yet (left RUNNING by a
    driver that was killed) the epochs Optuna was told."""
    charged = trial.user_attrs.get(TrialAttr.CHARGED_EPOCHS)
    return int(charged) if charged is not None else len(trial.intermediate_values)


def spent_epochs(trials: Sequence[FrozenTrial]) -> int:
    """The epochs a study's ``trials`` have trained in all (see :func:`charged_epochs`)."""
    return sum(charged_epochs(trial) for trial in trials)


def _failure(trial: FrozenTrial) -> TrialFailure:
    text = str(trial.user_attrs.get(TrialAttr.ERROR) or trial.user_attrs.get(TrialAttr.STOP_REASON) or "failed")
    return TrialFailure(trial.number, last_line(text), text)


def summarize(study: optuna.Study, spec: StudySpec) -> StudySummary:
    """Counts by state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING) and the best trial."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    summary = StudySummary(
        name=study.study_name,
        metric=spec.objective.metric,
        mode=spec.objective.mode,
        counts={state.name: counts.get(state.name, 0) for state in TrialState if counts.get(state.name)},
        diverged=sum(1 for t in trials if t.user_attrs.get(TrialAttr.DIVERGED)),
        over_limit=sum(1 for t in trials if t.user_attrs.get(TrialAttr.LIMIT_EXCEEDED)),
        failures=[_failure(t) for t in trials
                  if t.state == TrialState.FAIL or t.user_attrs.get(TrialAttr.LIMIT_EXCEEDED)],
        attempts={t.number: int(t.user_attrs[TrialAttr.ATTEMPTS]) for t in trials
                  if int(t.user_attrs.get(TrialAttr.ATTEMPTS) or 1) > 1},
        driver_active=active_driver(study) is not None,
        epochs_spent=spent_epochs(trials),
        epoch_budget=spec.budget.epochs,
        rung_model_trials=sum(1 for t in trials if TrialAttr.RUNG_MODEL_EPOCH in t.user_attrs),
    )
    best = best_trial(study)
    if best is not None and best.value is not None and math.isfinite(best.value):
        summary.best_number = best.number
        summary.best_value = best.value
        summary.best_config = trial_config(best, spec)
        summary.best_metrics = dict(best.user_attrs.get(TrialAttr.FINAL_METRICS, {}))
    return summary
