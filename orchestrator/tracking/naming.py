"""Names in the MLflow record: experiment and run names, run references, where a SQLite store
keeps its artifacts, and how an Optuna trial's end reads as a run status. (Tag and attribute
keys are in :mod:`orchestrator.keys`.)"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.keys import Env, TrialAttr

# References to runs inside records (the writer maps them to run ids).
PARENT_REF = "parent"


def trial_ref(number: int) -> str:
    return f"trial:{int(number)}"


def ref_number(ref: str) -> int | None:
    """The trial number in a ``trial:N`` reference (None for the parent)."""
    return int(ref.split(":", 1)[1]) if ref.startswith("trial:") else None


def trial_run_name(number: int) -> str:
    """``trial-007`` for Optuna trial 7 (three digits at least)."""
    return f"trial-{int(number):03d}"


def experiment_name(study_name: str, override: str | None = None) -> str:
    """The experiment holding a study's runs: ``override``, else $STEPSIZE_MLFLOW_EXPERIMENT,
    else the study's name."""
    return override or os.environ.get(Env.MLFLOW_EXPERIMENT) or study_name


def new_study_key() -> str:
    """A key that tells this study's parent run apart from another study's of the same name."""
    return uuid.uuid4().hex


def absolute_tracking_uri(uri: str, base: str | os.PathLike[str] | None = None) -> str:
    """A relative SQLite URI (``sqlite:///mlflow.db``) made absolute against ``base`` (the working
    folder by default), so the record can be found again from any folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(os.path.expanduser(uri[len(prefix):]))
        if not path.is_absolute():
            path = Path(base or os.getcwd()) / path
        return prefix + str(path.resolve())
    return uri


def is_http(uri: str) -> bool:
    return uri.split(":", 1)[0].lower() in ("http", "https")


def sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(os.path.expanduser(uri[len("sqlite:///"):]))
    return None


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite tracking file (MLflow's default
    is ``./mlruns`` relative to whichever folder the process runs in); the server decides for a
    remote tracking URI."""
    path = sqlite_path(uri)
    if path is None:
        return None
    folder = path.resolve().parent / "mlartifacts" / _safe(experiment)
    return folder.as_uri()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "experiment"


@dataclass(frozen=True)
class TrialStatus:
    """How an Optuna trial ended, as the run shows it."""

    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    text: str  # the stepsize.status tag

    @property
    def run_status(self) -> str:
        """MLflow's run status: FINISHED for a completed, pruned or diverged trial (stopping early
        is the scheduler's job, not a failure: the tags say how it ended), FAILED for a failed one,
        RUNNING while it runs."""
        return {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}.get(self.state, "RUNNING")

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETE", "PRUNED", "FAIL")


def trial_status(trial: Any) -> TrialStatus:
    """The status of an Optuna ``FrozenTrial``: its state, and the stop reason the searcher left in
    ``user_attrs["stop_reason"]`` (completed / pruned at epoch N / diverged ... / failed: ...)."""
    state = trial.state.name
    reason = trial.user_attrs.get(TrialAttr.STOP_REASON)
    if not reason:
        reason = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}.get(
            state, state.lower()
        )
    return TrialStatus(state, str(reason))


# A trial run left RUNNING when its driver was interrupted: it ends KILLED in MLflow (the Optuna
# trial stays RUNNING and `stepsize resume` runs it again, reopening the same run).
INTERRUPTED = "KILLED"


def interrupted_text(trial: Any, study_name: str) -> str:
    """The ``stepsize.status`` tag of a trial run ended by an interruption."""
    epochs = max(trial.intermediate_values, default=0)
    return f"interrupted at epoch {epochs}; `stepsize resume {study_name}` runs it again"
