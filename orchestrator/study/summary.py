"""Where a study stands, read from its storage: trials by state, the best trial and the
configuration it trained with."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator.keys import TrialAttr
from orchestrator.spec import StudySpec


@dataclass
class StudySummary:
    """Where a study stands: trials by state and the best trial so far."""

    name: str
    metric: str
    mode: str
    counts: dict[str, int]
    diverged: int = 0
    best_number: int | None = None
    best_value: float | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.name,
            "trials": self.total,
            "states": dict(self.counts),
            "diverged": self.diverged,
            "metric": self.metric,
            "mode": self.mode,
            "best": None
            if self.best_number is None
            else {"trial": self.best_number, "value": self.best_value, "config": self.best_config},
        }


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial, or None when no trial has completed."""
    try:
        return study.best_trial
    except ValueError:
        return None


def trial_config(trial: FrozenTrial, spec: StudySpec) -> dict[str, Any]:
    """The configuration a trial trained with: sampled params plus the space's fixed values."""
    config: dict[str, Any] = {}
    for param in spec.search_space.params:
        if param.name in trial.params:
            config[param.name] = trial.params[param.name]
        elif param.distribution is None and param.is_active(config):
            config[param.name] = param.value
    return config


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
    )
    best = best_trial(study)
    if best is not None and best.value is not None and math.isfinite(best.value):
        summary.best_number = best.number
        summary.best_value = best.value
        summary.best_config = trial_config(best, spec)
        summary.best_metrics = dict(best.user_attrs.get(TrialAttr.FINAL_METRICS, {}))
    return summary
