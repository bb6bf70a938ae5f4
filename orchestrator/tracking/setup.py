"""Setting up a study's recorder from its Optuna study: where its MLflow record lives (kept in the
study's attributes, so every later run finds the same parent run and record log), starting it,
and replaying what a record log still holds.

Recording never stops a study: a failure to set it up gives a warning and a recorder that records
nothing; ``STEPSIZE_TRACKING=off`` turns recording off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from orchestrator.credentials import for_storing, protected_logger
from orchestrator.keys import Env, StudyAttr
from orchestrator.tracking import naming, study_run
from orchestrator.tracking.recorder import StudyRecorder

logger = protected_logger("orchestrator.tracking")


class NoRecorder:
    """Stands in when recording is off or could not be set up."""

    parent_run_id = None

    def __init__(self) -> None:
        from ray.tune import Callback

        self.callback = Callback()

    def backfill_objective(self, study: Any, objective: str) -> None:
        return None

    def finish(self, study: Any, spec: Any, status: str | None = None) -> bool:
        return False

    def abandon(self, status: str) -> bool:
        return False


def recorder_for(study: Any, spec: Any, experiment_name: str | None = None, **options: Any) -> StudyRecorder:
    """A recorder for ``study`` (not started), keeping its MLflow coordinates in the study's user
    attributes: tracking URI, experiment, study key, record log and (once known) parent run id.
    ``options`` go to :class:`StudyRecorder`; without ``status_of`` a trial's status is read
    from the storage."""
    attrs = study.user_attrs
    uri = tracking_uri_of(study, spec)
    key = attrs.get(StudyAttr.MLFLOW_STUDY_KEY) or naming.new_study_key()
    experiment = attrs.get(StudyAttr.MLFLOW_EXPERIMENT) or naming.experiment_name(study.study_name, experiment_name)
    folder = Path(attrs[StudyAttr.MLFLOW_LOG]).parent if attrs.get(StudyAttr.MLFLOW_LOG) else log_folder(spec)
    recorder = StudyRecorder(
        tracking_uri=uri,
        study_name=study.study_name,
        study_key=key,
        log_folder=folder,
        experiment_name=experiment,
        parent_run_id=attrs.get(StudyAttr.MLFLOW_PARENT_RUN),
        parent_tags=study_run.parent_tags(spec),
        status_of=options.pop("status_of", None) or trial_status_source(study, spec.storage),
        objective=spec.objective.metric,
        **options,
    )
    wanted = {StudyAttr.MLFLOW_TRACKING_URI: for_storing(recorder.tracking_uri), StudyAttr.MLFLOW_STUDY_KEY: key,
              StudyAttr.MLFLOW_EXPERIMENT: experiment, StudyAttr.MLFLOW_LOG: str(recorder.log.path)}
    for name, value in wanted.items():
        if attrs.get(name) != value:
            study.set_user_attr(name, value)
    return recorder


def tracking_uri_of(study: Any, spec: Any) -> str:
    """The tracking URI of the study's record: the one its first run recorded in the study's
    attributes, or the spec's. The attribute holds no password (:mod:`orchestrator.credentials`);
    the spec's URI, when it is the same one, may carry it for this process."""
    recorded = study.user_attrs.get(StudyAttr.MLFLOW_TRACKING_URI)
    given = naming.absolute_tracking_uri(spec.tracking_uri)
    return given if recorded is None or for_storing(given) == recorded else recorded


def start_recording(study: Any, spec: Any, **options: Any) -> StudyRecorder | NoRecorder:
    """Set up and start the study's recorder; never raises (a warning and no recording instead)."""
    if os.environ.get(Env.TRACKING, "").lower() in ("off", "0", "false", "no"):
        return NoRecorder()
    try:
        return recorder_for(study, spec, **options).begin(study, spec)
    except Exception as exc:  # noqa: BLE001
        logger.warning("MLflow recording of study %r is off: %s: %s", study.study_name, type(exc).__name__, exc)
        return NoRecorder()


def trial_status_source(study: Any, storage_url: str) -> Callable[[int], naming.TrialStatus | None]:
    """Trial number -> its status in the Optuna storage (read after the searcher told it)."""
    from orchestrator.study.storage import make_storage, trial_id

    def status_of(number: int) -> naming.TrialStatus | None:
        try:
            return naming.trial_status(make_storage(storage_url).get_trial(trial_id(study, storage_url, number)))
        except Exception:  # noqa: BLE001 - the end-of-study reconciliation fills it in
            return None

    return status_of


def log_folder(spec: Any) -> Path:
    """Where a study's record log lives: its Ray results folder when that is local, else beside a
    SQLite Optuna storage, else ``~/.stepsize/records``."""
    from orchestrator.trial.checkpoints import local_study_folder

    folder = local_study_folder(spec)
    if folder is not None:
        return folder
    if spec.storage.startswith("sqlite:///"):
        return Path(os.path.expanduser(spec.storage[len("sqlite:///"):])).resolve().parent
    return Path.home() / ".stepsize" / "records"


def replay_record_log(study: Any, spec: Any) -> bool | None:
    """Write the records a study's record log still holds (its driver was killed, or the tracking
    store was unreachable when it ended). None when there is nothing to write or the study's
    driver is running (it writes them itself), else whether all of it was written."""
    from orchestrator.study.driver_lock import active_driver
    from orchestrator.tracking.record_log import RecordLog

    path = study.user_attrs.get(StudyAttr.MLFLOW_LOG)
    if not path or active_driver(study) is not None:
        return None
    if not RecordLog(path, adopt_open=True).backlog():
        return None
    return recorder_for(study, spec).replay(study)
