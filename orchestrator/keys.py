"""Every string that ties stepsize's pieces together, in one place.

- :class:`Result`: keys of the results a trial reports to Ray Tune (the workload's metrics plus what
  the trial runner adds), read by the searcher, the scheduler, the progress view and the recorder.
- :class:`Config`: keys stepsize adds to a trial's configuration (never searched, never shown).
- :data:`TUNE_RESULT_KEYS`: what Ray Tune itself adds to every result.
- :class:`TrialAttr` / :class:`StudyAttr`: Optuna user attributes on trials and on the study.
- :class:`Tag`: MLflow run tags.
- :class:`Env`: stepsize's own environment variables.
"""

from __future__ import annotations

from typing import Final


class Result:
    """Keys in a trial's per-epoch result."""

    EPOCH: Final = "epoch"  # the workload's epoch count; a resumed trial continues from its checkpoint
    TRIAL_FAILED: Final = "trial_failed"  # the workload raised; ERROR holds the text
    ERROR: Final = "error"
    DIVERGED: Final = "diverged"  # the divergence guard stopped the trial
    DIVERGENCE_PENALTY: Final = "divergence_penalty"  # a finite bad value to rank it by
    DIVERGED_LOSS: Final = "diverged_loss"
    DIVERGED_REASON: Final = "diverged_reason"
    LIMIT_EXCEEDED: Final = "limit_exceeded"  # the trial broke a per-trial limit (limits:); ERROR says which
    LIMIT_REASON: Final = "limit_reason"  # "trial 3 exceeded its time limit of 30 s"
    LIMIT_EXIT: Final = "limit_exit"  # the worker process ends itself after this report (thread stuck)
    LIMIT_PEAK_BYTES: Final = "limit_peak_bytes"  # resident memory at the stop
    GPU_IDS: Final = "gpu_ids"
    NODE_ID: Final = "node_id"
    NODE_IP: Final = "node_ip"  # added by Ray Tune
    HOSTNAME: Final = "hostname"  # added by Ray Tune
    WORLD_SIZE: Final = "world_size"  # processes of a DDP trial
    EFFECTIVE_LR: Final = "effective_learning_rate"
    DONE: Final = "done"  # added by Ray Tune to a trial's last result


class Config:
    """Keys stepsize adds to a trial's configuration; every one starts with ``_`` and is dropped
    before the configuration reaches the workload."""

    TRIAL_NUMBER: Final = "_trial_number"  # the Optuna trial number
    RESUME_FROM: Final = "_resume_from"  # a checkpoint folder a resumed trial continues from
    RUNG_MODEL_EPOCH: Final = "_rung_model_epoch"  # the rung the rung model proposed the trial from
    BASE_LR: Final = "base_learning_rate"  # the searched LR when lr_scaling made it effective
    PRIVATE_PREFIX: Final = "_"


#: What Ray Tune adds to every result; everything else in a result is what the trial reported.
TUNE_RESULT_KEYS: Final = frozenset({
    "training_iteration", "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "pid", "done", "trial_id", "should_checkpoint", "checkpoint_dir_name",
    "node_ip", "hostname", "date", "experiment_tag", "config",
})


class TrialAttr:
    """Optuna user attributes on a trial."""

    RAY_TRIAL_ID: Final = "ray_trial_id"
    EPOCHS: Final = "epochs"
    STOP_REASON: Final = "stop_reason"  # completed / pruned at epoch N / diverged in epoch N: ... / failed: ...
    FINAL_METRICS: Final = "final_metrics"  # the last reported metrics
    ERROR: Final = "error"
    DIVERGED: Final = "diverged"
    LIMIT_EXCEEDED: Final = "limit_exceeded"  # the limit's reason, when the trial was stopped by limits:
    EFFECTIVE_LR: Final = "effective_learning_rate"
    RESUMED_FROM_EPOCH: Final = "resumed_from_epoch"
    ATTEMPTS: Final = "attempts"  # runs of the trial in this study run, when Ray retried it after its worker died
    CHARGED_EPOCHS: Final = "charged_epochs"  # epochs trained, retried ones included (what budget.epochs counts)
    RUNG_MODEL_EPOCH: Final = "rung_model_epoch"  # the rung the rung model proposed it from (absent: the study's TPE)


class StudyAttr:
    """Optuna user attributes on the study (the study is the source of truth; the MLflow ones
    point into the record)."""

    SPEC: Final = "stepsize.spec"
    DRIVER: Final = "stepsize.driver"
    LR_RANGE: Final = "stepsize.lr_range"
    MLFLOW_PARENT_RUN: Final = "stepsize.mlflow_parent_run_id"
    MLFLOW_STUDY_KEY: Final = "stepsize.mlflow_study_key"
    MLFLOW_TRACKING_URI: Final = "stepsize.mlflow_tracking_uri"
    MLFLOW_EXPERIMENT: Final = "stepsize.mlflow_experiment"
    MLFLOW_LOG: Final = "stepsize.mlflow_log"  # the on-disk record log


class Tag:
    """MLflow run tags."""

    PARENT: Final = "mlflow.parentRunId"
    NOTE: Final = "mlflow.note.content"
    ROLE: Final = "stepsize.role"  # "study" on the parent, "trial" on each child
    STUDY: Final = "stepsize.study"
    STUDY_KEY: Final = "stepsize.study_key"
    TRIAL_NUMBER: Final = "stepsize.trial_number"
    RAY_TRIAL_ID: Final = "stepsize.ray_trial_id"
    STATUS: Final = "stepsize.status"  # the trial's stop reason
    STATE: Final = "stepsize.state"  # the Optuna state: COMPLETE, PRUNED, FAIL, RUNNING
    NODE_IP: Final = "stepsize.node_ip"
    HOSTNAME: Final = "stepsize.hostname"
    GPU_IDS: Final = "stepsize.gpu_ids"
    NODE_ID: Final = "stepsize.node_id"  # the Ray node the trial ran on (the latest, after a retry elsewhere)
    NODE_IDS: Final = "stepsize.node_ids"  # every Ray node the trial ran on, in order, when it moved
    BEST: Final = "stepsize.best"  # "true" on the best trial's run
    BEST_TRIAL: Final = "stepsize.best_trial"  # on the parent: the best trial's number
    BEST_RUN: Final = "stepsize.best_run_id"  # on the parent: the best trial's run id
    MODEL_URI: Final = "stepsize.model_uri"  # the best trial's logged model
    WORKLOAD: Final = "stepsize.workload"
    SAMPLER: Final = "stepsize.sampler"
    SCHEDULER: Final = "stepsize.scheduler"
    OBJECTIVE: Final = "stepsize.objective"
    RUNG_MODEL_EPOCH: Final = "stepsize.rung_model_epoch"  # on a trial the rung model proposed: its rung


class Env:
    """stepsize's own environment variables."""

    DEBUG: Final = "STEPSIZE_DEBUG"  # print tracebacks on errors
    TRACKING: Final = "STEPSIZE_TRACKING"  # "off" records nothing in MLflow
    MLFLOW_EXPERIMENT: Final = "STEPSIZE_MLFLOW_EXPERIMENT"  # experiment name instead of the study's
    LCBENCH_DIR: Final = "STEPSIZE_LCBENCH_DIR"  # the lcbench surrogate's folder
    REPLAY_STORAGE: Final = "STEPSIZE_REPLAY_STORAGE"  # the background record writer's Optuna storage URL
    REPLAY_TRACKING: Final = "STEPSIZE_REPLAY_TRACKING"  # ... and its tracking URI (may hold a password)
    REPLAY_PATIENCE: Final = "STEPSIZE_REPLAY_PATIENCE"  # seconds the background writer tries (0: none)


class ScriptEnv:
    """What a training script run as the workload finds in its environment, and the line it may
    print to report an epoch (:mod:`orchestrator.integrations.script` reads and writes these)."""

    CONFIG_FILE: Final = "STEPSIZE_CONFIG_FILE"  # JSON: {"config": {...}, "trial": {...}}
    PARAM_PREFIX: Final = "STEPSIZE_PARAM_"  # STEPSIZE_PARAM_LEARNING_RATE=0.01, one per searched name
    TRIAL_NUMBER: Final = "STEPSIZE_TRIAL_NUMBER"
    MAX_EPOCHS: Final = "STEPSIZE_MAX_EPOCHS"
    SEED: Final = "STEPSIZE_SEED"
    DEVICE: Final = "STEPSIZE_DEVICE"  # "cuda" when the trial was given a GPU, else "cpu"
    CHECKPOINT_DIR: Final = "STEPSIZE_CHECKPOINT_DIR"  # write the checkpoint here before reporting
    RESUME_DIR: Final = "STEPSIZE_RESUME_DIR"  # set when the trial continues: the checkpoint to load
    START_EPOCH: Final = "STEPSIZE_START_EPOCH"  # epochs already done (0 for a fresh trial)
    REPORT_FD: Final = "STEPSIZE_REPORT_FD"  # the pipe report() writes each epoch to
    ACK_FD: Final = "STEPSIZE_ACK_FD"  # the pipe report() waits on until the scheduler decided
    REPORT_LINE: Final = "STEPSIZE_REPORT "  # a stdout line `STEPSIZE_REPORT {"epoch": 1, "val_loss": 0.4}`
