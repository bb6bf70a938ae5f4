"""MLflow as the study's record (driver side): one parent run per study, one nested child run per
trial, written in batches through a Ray Tune callback, with one on-disk record log for batching
and outages (see ``docs/mlflow.md``)."""

from orchestrator.tracking.callback import TrackingCallback
from orchestrator.tracking.naming import TrialStatus, trial_run_name
from orchestrator.tracking.recorder import StudyRecorder
from orchestrator.tracking.setup import recorder_for, replay_record_log, start_recording

__all__ = [
    "StudyRecorder",
    "TrackingCallback",
    "TrialStatus",
    "recorder_for",
    "replay_record_log",
    "start_recording",
    "trial_run_name",
]
