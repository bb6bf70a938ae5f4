"""The study's recorder: one parent MLflow run per study and one child run per trial, written by
the driver through :class:`~orchestrator.tracking.callback.TrackingCallback`.

The runner makes one with :func:`orchestrator.tracking.start_recording` after creating the study
and joining Ray, passes ``recorder.callback`` to the Tuner, and calls ``recorder.finish(study,
spec)`` once the searcher has told Optuna the end of every trial. Every record goes through the
study's record log on disk (:mod:`~orchestrator.tracking.record_log`) and is written by a
background thread (:mod:`~orchestrator.tracking.flusher`), so neither a killed driver nor an
unreachable tracking store loses one.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from orchestrator.credentials import protected_logger, redact
from orchestrator.keys import StudyAttr, Tag, TrialAttr
from orchestrator.tracking import flusher as _flusher
from orchestrator.tracking import naming, records, study_run
from orchestrator.tracking.best_model import best_checkpoint, log_best_model
from orchestrator.tracking.callback import TrackingCallback
from orchestrator.tracking.flusher import Flusher
from orchestrator.tracking.record_log import RecordLog, log_path
from orchestrator.tracking.values import params
from orchestrator.tracking.writer import MlflowWriter

logger = protected_logger("orchestrator.tracking")


class StudyRecorder:
    """Records from the callback and the study's start and end, logged on disk and written to
    MLflow from a background thread.

    Args:
        tracking_uri: MLflow tracking URI (a relative SQLite path is made absolute).
        study_name: the study (parent run name; experiment name unless ``experiment_name``).
        study_key: identifies the study's parent run (tag ``stepsize.study_key``).
        log_folder: where the record log (and the staged artifacts) live.
        parent_run_id: the parent run to reuse (kept in the Optuna study's user attributes).
        status_of: Optuna trial number -> ``TrialStatus`` for the callback.
        objective: the objective metric's name.
        interval_s, batch_results: flush every ``interval_s`` seconds (default 5) or when that
            many results wait (default 200), whichever comes first, and at the study's end.
        adopt_log: take over the open segment of the record log a killed driver left (only the
            study's driver may).
    """

    final_retries = 2  # at the study's end, while the store is unreachable: tries after the first
    retry_pause_s = 2.0

    def __init__(
        self,
        *,
        tracking_uri: str,
        study_name: str,
        study_key: str,
        log_folder: str | os.PathLike[str],
        experiment_name: str | None = None,
        parent_run_id: str | None = None,
        parent_tags: dict[str, str] | None = None,
        status_of: Callable[[int], naming.TrialStatus | None] | None = None,
        objective: str | None = None,
        interval_s: float | None = None,
        batch_results: int | None = None,
        adopt_log: bool = True,
    ):
        self.tracking_uri = naming.absolute_tracking_uri(tracking_uri)
        self.study_name = study_name
        self.study_key = study_key
        self.experiment_name = naming.experiment_name(study_name, experiment_name)
        self.writer = MlflowWriter(self.tracking_uri, self.experiment_name, study_name, study_key,
                                   parent_run_id=parent_run_id, parent_tags=parent_tags)
        folder = Path(log_folder)
        self.staging = folder / f"mlflow-artifacts-{study_key[:12]}"
        self.log = RecordLog(log_path(folder, study_key), adopt_open=adopt_log)
        self.flusher = Flusher(
            self.log, self.writer,
            interval_s=_flusher.DEFAULT_INTERVAL_S if interval_s is None else interval_s,
            batch_results=_flusher.DEFAULT_BATCH_RESULTS if batch_results is None else batch_results,
        )
        self.callback = TrackingCallback(self.add, status_of or (lambda number: None), objective,
                                         on_end=self._trial_ended)
        self._study: Any = None
        self._saved_parent = parent_run_id

    # -- records in, records out -----------------------------------------------------------------
    def add(self, *items: records.Record) -> None:
        self.flusher.added(self.log.add(*items))

    def start(self) -> "StudyRecorder":
        """Start the writer thread."""
        self.flusher.start()
        return self

    def flush(self) -> bool:
        """Write what waits now, in the calling thread; True when nothing was left over."""
        return self.flusher.flush()

    def close(self, retries: int | None = None, pause_s: float | None = None) -> bool:
        """Stop the thread and write what is left, retrying while the store is unreachable; True
        when everything was written, else the records stay in the record log."""
        retries = self.final_retries if retries is None else retries
        pause_s = self.retry_pause_s if pause_s is None else pause_s
        self.flusher.stop()
        for attempt in range(retries + 1):
            if self.flusher.flush():
                return True
            if attempt < retries:
                time.sleep(pause_s)
        logger.warning(
            "MLflow tracking at %s is still unreachable at the end of study %r: %d records are kept in %s "
            "and are written by the next `stepsize ui %s` or `stepsize resume %s`.",
            redact(self.tracking_uri), self.study_name, self.log.waiting(), self.log.path.parent,
            self.study_name, self.study_name,
        )
        return False

    @property
    def parent_run_id(self) -> str | None:
        return self.writer.parent_run_id

    # -- the study -------------------------------------------------------------------------------
    def begin(self, study: Any, spec: Any, cluster: dict[str, Any] | None = None) -> "StudyRecorder":
        """Queue the parent run's start records (spec, sampler, scheduler, cluster) and start."""
        self._study = study
        self.add(*study_run.start_records(spec, cluster if cluster is not None else study_run.cluster_info(),
                                          self.staging))
        threading.Thread(target=_warm_up, name="stepsize-plot-imports", daemon=True).start()
        return self.start()

    def backfill_objective(self, study: Any, objective: str) -> None:
        """Queue every recorded intermediate value of ``study`` as the objective metric of its
        trial's run. After a resume this restores points a killed driver reported to Optuna but
        never wrote to MLflow when its record log is gone with the machine; the writer skips the
        points MLflow already has. A diverged trial's last value is a penalty, not a loss: skipped."""
        for trial in study.get_trials(deepcopy=False):
            steps = sorted(trial.intermediate_values)
            if trial.user_attrs.get(TrialAttr.DIVERGED):
                steps = steps[:-1]
            ref = naming.trial_ref(trial.number)
            self.add(*(records.metrics(ref, step, {objective: trial.intermediate_values[step]}) for step in steps))

    def finish(self, study: Any, spec: Any, status: str | None = None) -> bool:
        """After the searcher told Optuna every trial's end: reconcile each trial's run with its
        Optuna state, record the best configuration, metrics and plots on the parent, end it
        (``status``; by default FINISHED, or KILLED / FAILED when called while an interruption or
        an error propagates), and write everything out. Never raises; True when all was written."""
        try:
            return self._finish(study, spec, status or ending_status())
        except Exception:  # noqa: BLE001 - recording never fails a study
            logger.warning("MLflow record of study %r's end failed", self.study_name, exc_info=True)
            return False

    def replay(self, study: Any) -> bool:
        """Write what the record log holds (records a driver left), in this thread; True when
        all of it was written."""
        written = self.flush()
        self.save_parent(study)
        if written:
            shutil.rmtree(self.staging, ignore_errors=True)
        return written

    def save_parent(self, study: Any) -> None:
        """Keep the parent run id in the Optuna study (once the writer has it)."""
        parent = self.writer.parent_run_id
        if parent and parent != self._saved_parent:
            try:
                study.set_user_attr(StudyAttr.MLFLOW_PARENT_RUN, parent)
                self._saved_parent = parent
            except Exception:  # noqa: BLE001
                logger.debug("could not store the MLflow parent run id", exc_info=True)

    def _finish(self, study: Any, spec: Any, status: str) -> bool:
        from orchestrator.study.summary import summarize, trial_config
        from orchestrator.tracking.plots import lr_range_files, make_plots

        self._study = study
        self.flusher.stop()
        callback = self.callback
        for trial in study.get_trials(deepcopy=False):
            state = naming.trial_status(trial)
            if callback.ended.get(trial.number) == state.state:
                continue
            ref = naming.trial_ref(trial.number)
            if trial.number not in callback.started:
                tags = {Tag.TRIAL_NUMBER: str(trial.number)}
                if trial.user_attrs.get(TrialAttr.RAY_TRIAL_ID):
                    tags[Tag.RAY_TRIAL_ID] = str(trial.user_attrs[TrialAttr.RAY_TRIAL_ID])
                start_ms = int(trial.datetime_start.timestamp() * 1000) if trial.datetime_start else None
                self.add(records.open_run(ref, naming.trial_run_name(trial.number), tags, start_ms),
                         records.params(ref, params(trial_config(trial, spec))))
                callback.started.add(trial.number)
            callback.record_end(trial.number, state)
        summary = summarize(study, spec)
        files, notes = make_plots(study, spec.objective.metric, self.staging / "plots")
        files.extend(lr_range_files(study, spec.name, self.staging / "plots"))
        self.add(*study_run.end_records(summary, spec, self.staging, files, notes))
        self.add(records.close(naming.PARENT_REF, status))
        written = self.close()
        if written and summary.best_number is not None:
            best_run = self.writer.run_id(naming.trial_ref(summary.best_number))
            if best_run:
                tags = {Tag.BEST_RUN: best_run}
                model_uri = self._log_best_model(spec, summary.best_number, best_run)
                if model_uri:
                    tags[Tag.MODEL_URI] = model_uri
                self.add(records.tags(naming.PARENT_REF, tags))
                written = self.flusher.flush()
        self.save_parent(study)
        self.log.close()
        if written:
            shutil.rmtree(self.staging, ignore_errors=True)
        return written

    def _log_best_model(self, spec: Any, number: int, run_id: str) -> str | None:
        checkpoint = best_checkpoint(spec, number)
        if checkpoint is None:
            return None
        try:
            return log_best_model(self.tracking_uri, run_id, checkpoint)
        except Exception as exc:  # noqa: BLE001 - recording never fails a study
            logger.warning("the best trial's model could not be logged to MLflow: %s: %s", type(exc).__name__, exc)
            return None

    def _trial_ended(self) -> None:
        # A trial's end is written with the next interval's batch (or at the study's end), not
        # in a flush of its own: fewer, larger MLflow writes while trials run.
        if self._study is not None:
            self.save_parent(self._study)


def ending_status() -> str:
    """FINISHED, or KILLED / FAILED when called while an interruption or error propagates."""
    kind = sys.exc_info()[0]
    if kind is None:
        return "FINISHED"
    return "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"


def _warm_up() -> None:
    """Import what the study's end needs (plots, the model flavour) while the trials train."""
    from orchestrator.tracking.plots import warm_up

    warm_up()
    try:
        import mlflow.pytorch  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
