"""Reading a study that another process (a driver under test) may be creating right now."""

from __future__ import annotations

import optuna
import sqlalchemy.exc

from orchestrator.errors import SpecError
from orchestrator.study.storage import make_storage


def trials_if_created(storage: str, name: str) -> list[optuna.trial.FrozenTrial] | None:
    """The study's trials, or None while the study (or its database's schema) is not there yet:
    a reader polling during the driver's start can see the schema half-made."""
    try:
        return optuna.load_study(study_name=name, storage=make_storage(storage)).get_trials(deepcopy=False)
    except (KeyError, SpecError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
        return None
