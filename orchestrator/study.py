"""The Optuna study: created or loaded from storage (the study's source of truth), and read
back as a summary (trials by state, best so far) or the best configuration."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator.errors import StudyNotFoundError
from orchestrator.samplers import build_sampler
from orchestrator.spec import StudySpec, spec_from_mapping

SPEC_ATTR = "stepsize.spec"
optuna.logging.set_verbosity(optuna.logging.WARNING)


class StudyExistsError(RuntimeError):
    """``launch`` was pointed at a study name that already has trials in the storage."""

    def __init__(self, name: str, storage: str, n_trials: int):
        self.name = name
        super().__init__(
            f"study {name!r} already exists in {storage} with {n_trials} trials; stepsize will not "
            f"mix a new launch into it. Continue it with `stepsize resume {name}` (add --trials N to "
            "extend it to N trials), start a fresh study beside it with `stepsize launch --new` "
            "(named after the first free suffix), or give the study another `name`."
        )


@functools.lru_cache(maxsize=8)
def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for ``url``, one per URL in a process (each holds a connection pool).

    SQLite gets a generous lock timeout and write-ahead logging with ``synchronous=NORMAL``: a
    commit survives the process being killed (only a power loss can drop the last ones), and the
    driver's writes no longer wait for an fsync each. Other databases get connection checks.
    """
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # connections opened from now on get the pragmas
    return storage


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_missing(url: str) -> bool:
    if not url.startswith("sqlite:///"):
        return False
    return not Path(os.path.expanduser(url[len("sqlite:///"):])).is_file()


def study_names(url: str) -> list[str]:
    """Names of the studies in the storage at ``url`` (creates nothing for a missing SQLite file)."""
    if _sqlite_missing(url):
        return []
    return optuna.get_all_study_names(make_storage(url))


def refuse_existing_study(spec: StudySpec) -> None:
    """Raise :class:`StudyExistsError` when ``spec``'s name is taken in its storage."""
    if spec.name in study_names(spec.storage):
        existing = optuna.load_study(study_name=spec.name, storage=make_storage(spec.storage))
        raise StudyExistsError(spec.name, spec.storage, len(existing.trials))


def next_free_name(spec: StudySpec) -> str:
    """``spec.name`` if it is free in its storage, else the first free ``NAME-2``, ``NAME-3``..."""
    taken = set(study_names(spec.storage))
    if spec.name not in taken:
        return spec.name
    suffix = 2
    while f"{spec.name}-{suffix}" in taken:
        suffix += 1
    return f"{spec.name}-{suffix}"


def create_study(spec: StudySpec) -> optuna.Study:
    """Create ``spec``'s study in its storage, recording the spec in the study's attributes."""
    refuse_existing_study(spec)
    storage = make_storage(spec.storage)
    study = optuna.create_study(
        study_name=spec.name, storage=storage, sampler=build_sampler(spec), direction=spec.objective.direction
    )
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study


def store_spec(study: optuna.Study, spec: StudySpec) -> None:
    """Record ``spec`` as the study's spec (a resume that extends the budget updates it)."""
    study.set_user_attr(SPEC_ATTR, spec.to_dict())


def load_study(name: str, storage_url: str) -> tuple[optuna.Study, StudySpec]:
    """Load a study and the spec it was launched with; :class:`StudyNotFoundError` if absent."""
    names = study_names(storage_url)
    if name not in names:
        raise StudyNotFoundError(name, storage_url, names)
    study = optuna.load_study(study_name=name, storage=make_storage(storage_url))
    spec = spec_from_mapping(study.user_attrs[SPEC_ATTR])
    # A sampler seeded as at launch would draw its first (random) configurations again; seed it
    # with how far the study got instead, which is as reproducible and never repeats them.
    done = len(study.get_trials(deepcopy=False))
    study.sampler = build_sampler(dataclasses.replace(spec, seed=spec.seed + 7919 * done) if done else spec)
    return study, spec


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
        diverged=sum(1 for t in trials if t.user_attrs.get("diverged")),
    )
    best = best_trial(study)
    if best is not None and best.value is not None and math.isfinite(best.value):
        summary.best_number = best.number
        summary.best_value = best.value
        summary.best_config = trial_config(best, spec)
        summary.best_metrics = dict(best.user_attrs.get("final_metrics", {}))
    return summary
