"""MLflow as the study's record: one parent run per study, one nested child run per trial,
written by the driver in batches through a Ray Tune callback (see ``docs/mlflow.md``)."""

from orchestrator.tracking.callback import TrackingCallback
from orchestrator.tracking.naming import PARENT_RUN_ATTR, TrialStatus, trial_run_name
from orchestrator.tracking.recorder import StudyRecorder, recorder_for, replay_spool, start_recording

__all__ = [
    "PARENT_RUN_ATTR",
    "StudyRecorder",
    "TrackingCallback",
    "TrialStatus",
    "recorder_for",
    "replay_spool",
    "start_recording",
    "trial_run_name",
]
