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

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from orchestrator.credentials import protected_logger, redact
from orchestrator.keys import StudyAttr, Tag, TrialAttr
from orchestrator.tracking import flusher as _flusher
from orchestrator.tracking import naming, records, study_run
from orchestrator.tracking.best_model import BestModelLogging, best_checkpoint, log_best_model
from orchestrator.tracking.callback import TrackingCallback, run_params
from orchestrator.tracking.flusher import Flusher
from orchestrator.tracking.record_log import RecordLog, log_path
from orchestrator.tracking.writer import MlflowWriter

logger = protected_logger("orchestrator.tracking")
if logger.level == logging.NOTSET:
    # Its warnings reach stderr whatever a library does to the root logger's level
    # (importing mlflow.pytorch calls logging.basicConfig(level=ERROR)).
    logger.setLevel(logging.WARNING)


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
        self._parent_ended = False

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

    def close(self, retries: int | None = None, pause_s: float | None = None, warn: bool = True) -> bool:
        """Stop the thread and write what is left, retrying while the store is unreachable; True
        when everything was written, else the records stay in the record log (and, with ``warn``,
        a warning says where)."""
        retries = self.final_retries if retries is None else retries
        pause_s = self.retry_pause_s if pause_s is None else pause_s
        self.flusher.stop()
        for attempt in range(retries + 1):
            if self.flusher.flush():
                return True
            if attempt < retries:
                time.sleep(pause_s)
        if not warn:
            return False
        logger.warning(
            "tracking_uri %s is still unreachable at the end of study %r: %d records are kept in the record log "
            "%s and are written by the next `stepsize resume %s` or `stepsize ui %s` once the server is back.",
            redact(self.tracking_uri), self.study_name, self.log.waiting(), self.log.path,
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
        self.callback.shown_config = study_run.config_view(spec)
        # The parent run is (again) RUNNING: a resumed study's parent ended KILLED or FINISHED.
        self.add(records.open_run(naming.PARENT_REF, self.study_name, {}))
        self.add(*study_run.start_records(spec, cluster if cluster is not None else study_run.cluster_info(),
                                          self.staging))
        self.probe()
        threading.Thread(target=_warm_up, name="stepsize-plot-imports", daemon=True).start()
        return self.start()

    def probe(self, timeout_s: float = 3.0) -> bool:
        """At the start: a tracking server that does not answer gets one warning now (within
        ``timeout_s``), not after MLflow's HTTP retries; the flusher then stays quiet about it."""
        if not naming.is_http(self.tracking_uri) or self.writer.reachable(timeout_s):
            return True
        self.flusher.outage = "its /health does not answer"
        logger.warning(
            "tracking_uri %s does not answer: study %r runs on and its MLflow records are kept in the record "
            "log %s; they are written when the server is back (by this run, else by `stepsize resume %s` or "
            "`stepsize ui %s`).", redact(self.tracking_uri), self.study_name, self.log.path,
            self.study_name, self.study_name,
        )
        return False

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
        an error propagates), and write everything out. Never raises; True when all was written.

        Trials still RUNNING in Optuna (``stepsize resume`` runs them again) end KILLED in MLflow.
        An interrupted or failed end writes the parent's end first and skips the plots and the
        best model (the resumed study's end draws them); a second Ctrl-C meanwhile still leaves
        the parent ended."""
        status = status or ending_status()
        try:
            return self._finish(study, spec, status)
        except KeyboardInterrupt:
            if not self._parent_ended:
                self._end_parent_now("KILLED", study)
            logger.warning("interrupted while recording the end of study %r; what is left waits in the record log "
                           "%s for `stepsize resume %s` or `stepsize ui %s`.", self.study_name, self.log.path,
                           self.study_name, self.study_name)
            return False
        except Exception:  # noqa: BLE001 - recording never fails a study
            logger.warning("MLflow record of study %r's end failed", self.study_name, exc_info=True)
            return False

    def _end_parent_now(self, status: str, study: Any) -> None:
        """The parent's end written at once and its id kept in the study, Ctrl-C held back
        meanwhile so that neither write is cut midway (one try; the record log keeps the end)."""
        end = records.close(naming.PARENT_REF, status)
        with _ctrl_c_deferred():
            try:
                self.add(end)
                self.writer.apply([end])
                self._parent_ended = True
            except Exception:  # noqa: BLE001
                logger.debug("could not end the MLflow parent run now", exc_info=True)
            self.save_parent(study)

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
        complete = status == "FINISHED"
        self.flusher.stop(timeout_s=120.0 if complete else 5.0)
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
                         records.params(ref, run_params(trial_config(trial, spec))))
                callback.started.add(trial.number)
            if state.finished:
                callback.record_end(trial.number, state)
            else:  # left for `stepsize resume`, which reopens this run
                self.add(records.tags(ref, {Tag.STATE: state.state, Tag.STATUS: naming.interrupted_text(
                    trial, self.study_name)}), records.close(ref, naming.INTERRUPTED))
        if not complete:  # the parent's end first: nothing after this can leave it RUNNING
            self._end_parent_now(status, study)
        summary = summarize(study, spec)
        files: list[Path] = []
        notes = [f"the plots are drawn when the study ends (`stepsize resume {self.study_name}`)"]
        model = None
        if complete:
            # The best model is logged in a thread while the plots are drawn, once the trials'
            # ends are written (its run's end must be final before the model reopens it).
            model = self._start_best_model(spec, summary.best_number)
            files, notes = make_plots(study, spec.objective.metric, self.staging / "plots")
            files.extend(lr_range_files(study, spec.name, self.staging / "plots"))
        self.add(*study_run.end_records(summary, spec, self.staging, files, notes))
        self.add(records.close(naming.PARENT_REF, status))
        written = self.close(retries=None if complete else 0, warn=False)
        if written and complete:
            written = self.record_best_model(spec, summary.best_number, started=model)
        elif model is not None:
            model.join()  # its tags wait in the record log with the rest
        self.save_parent(study)
        self.log.close()
        if written:
            shutil.rmtree(self.staging, ignore_errors=True)
        else:
            self._hand_over(spec, complete)
        return written

    def _start_best_model(self, spec: Any, best_number: int | None) -> "BestModelLogging | None":
        """Write what waits, then log the best trial's model in a thread; None when that cannot
        start now (no best trial, the store away, the run not known yet): then
        :meth:`record_best_model` logs it in order."""
        if best_number is None or not self.flusher.flush():
            return None
        run_id = self.writer.run_id(naming.trial_ref(best_number))
        if not run_id:
            return None
        return BestModelLogging(lambda: self._log_best_model(spec, best_number, run_id), run_id).start()

    def record_best_model(self, spec: Any, best_number: int | None, started: "BestModelLogging | None" = None) -> bool:
        """Log the best trial's model on its run (or take the one ``started`` logged) and tag the
        parent with both; True when written."""
        if best_number is None:
            return True
        if started is not None:
            tags = {Tag.BEST_RUN: started.run_id}
            model_uri = started.join()
            if model_uri:
                tags[Tag.MODEL_URI] = model_uri
            self.add(records.tags(naming.PARENT_REF, tags))
            return self.flusher.flush()
        ref = naming.trial_ref(best_number)
        if self.writer.run_id(ref) is None:  # a later process: find the run (the tag it already has)
            self.add(records.tags(ref, {Tag.TRIAL_NUMBER: str(best_number)}))
            if not self.flusher.flush():
                return False
        best_run = self.writer.run_id(ref)
        if not best_run:
            return True
        tags = {Tag.BEST_RUN: best_run}
        model_uri = self._log_best_model(spec, best_number, best_run)
        if model_uri:
            tags[Tag.MODEL_URI] = model_uri
        self.add(records.tags(naming.PARENT_REF, tags))
        return self.flusher.flush()

    def _hand_over(self, spec: Any, complete: bool) -> None:
        """The store is still away at the study's end: a background process writes the record
        (and, for a finished study, the best model) as soon as it answers; a warning says so."""
        from orchestrator.tracking.handover import patience_s, spawn

        started = spawn(self.study_name, spec.storage, self.tracking_uri, self.log.path, best_model=complete)
        later = (f"a background process (pid {started[0]}, its log {started[1]}) writes them, and the best model, "
                 f"as soon as the server answers (trying for {patience_s() / 60:g} min); ") if started else ""
        logger.warning(
            "tracking_uri %s is still unreachable at the end of study %r: %d records are kept in the record log "
            "%s; %sthe next `stepsize resume %s` or `stepsize ui %s` writes them too.",
            redact(self.tracking_uri), self.study_name, self.log.waiting(), self.log.path, later,
            self.study_name, self.study_name,
        )

    def abandon(self, status: str) -> bool:
        """End the parent run with ``status`` without reading the study (its storage is away):
        what cannot be written now waits in the record log for ``stepsize resume``."""
        self.flusher.stop(timeout_s=5.0)
        self.add(records.close(naming.PARENT_REF, status))
        written = self.close(retries=0)
        self.log.close()
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


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) waits until the block is done, then raises KeyboardInterrupt (main thread
    only: elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _warm_up() -> None:
    """Import what the study's end needs (plots, the model flavour) while the trials train."""
    from orchestrator.tracking.best_model import import_flavour
    from orchestrator.tracking.plots import warm_up

    warm_up()
    try:
        import_flavour()  # leaves the root logger as it was
    except Exception:  # noqa: BLE001
        pass
