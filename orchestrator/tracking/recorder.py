"""The study's recorder: one parent MLflow run per study and one child run per trial, written by
the driver through :class:`~orchestrator.tracking.callback.TrackingCallback`.

The runner calls :func:`start_recording` after creating the study and joining Ray, passes
``recorder.callback`` to the Tuner, and calls ``recorder.finish(study, spec)`` once the searcher
has told Optuna the end of every trial. Recording never stops a study: a failure to set it up
gives a warning and a recorder that records nothing; an unreachable tracking store gives a warning
and a spool on disk that is written when the store is back (see ``docs/mlflow.md``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ray.tune import Callback

from orchestrator.tracking import flusher as _flusher
from orchestrator.tracking import naming, records, study_run
from orchestrator.tracking._values import params
from orchestrator.tracking.best_model import MODEL_URI_TAG, best_checkpoint, log_best_model
from orchestrator.tracking.buffer import RecordBuffer, journal_leftovers, read_journal
from orchestrator.tracking.callback import TrackingCallback
from orchestrator.tracking.flusher import Flusher
from orchestrator.tracking.spool import Spool, spool_file
from orchestrator.tracking.writer import MlflowWriter

logger = logging.getLogger("orchestrator.tracking")

SPOOL_ATTR = "stepsize.mlflow_spool"
DISABLE_ENV = "STEPSIZE_TRACKING"  # "off" records nothing


class StudyRecorder:
    """Buffers records from the callback and the study's start and end, and writes them to MLflow
    from a background thread (see :class:`~orchestrator.tracking.flusher.Flusher`).

    Args:
        tracking_uri: MLflow tracking URI (a relative SQLite path is made absolute).
        study_name: the study (parent run name; experiment name unless ``experiment_name``).
        study_key: identifies the study's parent run (tag ``stepsize.study_key``).
        spool_folder: where records wait on disk while the store is unreachable.
        parent_run_id: the parent run to reuse (kept in the Optuna study's user attributes).
        status_of: Optuna trial number -> ``TrialStatus`` for the callback.
        objective: the objective metric's name.
        interval_s, batch_results: flush every ``interval_s`` seconds (default 5) or when that
            many results wait (default 200), whichever comes first, and at the study's end.
            Every record is also journaled on disk as it arrives, so a killed driver loses none.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        study_name: str,
        study_key: str,
        spool_folder: str | os.PathLike[str],
        experiment_name: str | None = None,
        parent_run_id: str | None = None,
        parent_tags: dict[str, str] | None = None,
        status_of: Callable[[int], naming.TrialStatus | None] | None = None,
        objective: str | None = None,
        interval_s: float | None = None,
        batch_results: int | None = None,
    ):
        self.tracking_uri = naming.absolute_tracking_uri(tracking_uri)
        self.study_name = study_name
        self.study_key = study_key
        self.experiment_name = naming.experiment_name(study_name, experiment_name)
        self.writer = MlflowWriter(self.tracking_uri, self.experiment_name, study_name, study_key,
                                   parent_run_id=parent_run_id, parent_tags=parent_tags)
        folder = Path(spool_folder)
        self.spool = Spool(spool_file(folder, study_key), header={
            "study": study_name, "study_key": study_key, "tracking_uri": self.tracking_uri,
            "experiment": self.experiment_name, "parent_run_id": parent_run_id,
        })
        self.staging = folder / f"mlflow-artifacts-{study_key[:12]}"
        self.journal = folder / f"mlflow-journal-{study_key[:12]}.jsonl"
        # Journal files of a driver that was killed, moved aside so this run's journal starts anew.
        self._leftovers = [_set_aside(path, index) for index, path in enumerate(journal_leftovers(self.journal))]
        self.buffer = RecordBuffer(journal=self.journal)
        self.flusher = Flusher(
            self.buffer, self.writer, self.spool,
            interval_s=_flusher.DEFAULT_INTERVAL_S if interval_s is None else interval_s,
            batch_results=_flusher.DEFAULT_BATCH_RESULTS if batch_results is None else batch_results,
        )
        self.callback: Callback = TrackingCallback(self.add, status_of or (lambda number: None), objective,
                                                   on_end=self._trial_ended)
        self._study: Any = None
        self._saved_parent = parent_run_id

    # -- records in, records out -----------------------------------------------------------------
    def add(self, *items: records.Record) -> None:
        self.flusher.added(self.buffer.add(*items))

    def start(self) -> "StudyRecorder":
        """Start the writer thread."""
        self.flusher.start()
        return self

    def flush(self) -> bool:
        """Write what waits now, in the calling thread; True when nothing was left over."""
        return self.flusher.flush()

    final_retries = 2  # at the study's end, while the store is unreachable: tries after the first
    retry_pause_s = 2.0

    def close(self, retries: int | None = None, pause_s: float | None = None) -> bool:
        """Stop the thread and write what is left, retrying while the store is unreachable; True
        when everything was written, else the records stay in the spool."""
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
            "and are written by the next `stepsize ui %s` (or orchestrator.tracking.replay_spool).",
            naming.display_uri(self.tracking_uri), self.study_name, len(self.spool), self.spool.path, self.study_name,
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
        self._take_leftovers()
        threading.Thread(target=_warm_up, name="stepsize-plot-imports", daemon=True).start()
        return self.start()

    def backfill_objective(self, study: Any, objective: str) -> None:
        """Queue every recorded intermediate value of ``study`` as the objective metric of its
        trial's run. After a resume this restores points a killed driver reported to Optuna but
        never wrote to MLflow when its journal is gone with the machine; the writer skips the
        points MLflow already has. A diverged trial's last value is a penalty, not a loss: skipped."""
        for trial in study.get_trials(deepcopy=False):
            steps = sorted(trial.intermediate_values)
            if trial.user_attrs.get("diverged"):
                steps = steps[:-1]
            ref = naming.trial_ref(trial.number)
            self.add(*(records.metrics(ref, step, {objective: trial.intermediate_values[step]}) for step in steps))

    def _take_leftovers(self) -> None:
        """Queue the records a killed driver of this study had not written yet (they go to the
        new journal first, then the old files go)."""
        for path in self._leftovers:
            self.add(*read_journal(path))
            path.unlink(missing_ok=True)
        self._leftovers = []

    def finish(self, study: Any, spec: Any, status: str | None = None) -> bool:
        """After the searcher told Optuna every trial's end: reconcile each trial's run with its
        Optuna state, record the best configuration, metrics and plots on the parent, end it, and
        write everything out. Never raises; returns True when all was written."""
        try:
            return self._finish(study, spec, status or _ending_status())
        except Exception:  # noqa: BLE001 - recording never fails a study
            logger.warning("MLflow record of study %r's end failed", self.study_name, exc_info=True)
            return False

    def _finish(self, study: Any, spec: Any, status: str) -> bool:
        from orchestrator.study import summarize, trial_config
        from orchestrator.tracking.plots import make_plots

        self._study = study
        self.flusher.stop()
        callback = self.callback
        assert isinstance(callback, TrackingCallback)
        for trial in study.get_trials(deepcopy=False):
            state = naming.trial_status(trial)
            if callback.ended.get(trial.number) == state.state:
                continue
            ref = naming.trial_ref(trial.number)
            if trial.number not in callback.started:
                tags = {naming.TRIAL_NUMBER_TAG: str(trial.number)}
                if trial.user_attrs.get("ray_trial_id"):
                    tags[naming.RAY_TRIAL_ID_TAG] = str(trial.user_attrs["ray_trial_id"])
                start_ms = int(trial.datetime_start.timestamp() * 1000) if trial.datetime_start else None
                self.add(records.open_run(ref, naming.trial_run_name(trial.number), tags, start_ms),
                         records.params(ref, params(trial_config(trial, spec))))
                callback.started.add(trial.number)
            callback.record_end(trial.number, state)
        summary = summarize(study, spec)
        files, notes = make_plots(study, spec.objective.metric, self.staging / "plots")
        files.extend(_lr_range_files(study, spec, self.staging / "plots"))
        self.add(*study_run.end_records(summary, spec, self.staging, files, notes))
        self.add(records.close(naming.PARENT_REF, status))
        written = self.close()
        if written and summary.best_number is not None:
            best_run = self.writer.run_id(naming.trial_ref(summary.best_number))
            if best_run:
                tags = {naming.BEST_RUN_TAG: best_run}
                model_uri = self._log_best_model(spec, summary.best_number, best_run)
                if model_uri:
                    tags[MODEL_URI_TAG] = model_uri
                self.add(records.tags(naming.PARENT_REF, tags))
                written = self.flusher.flush()
        self._save_parent(study)
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
            self._save_parent(self._study)

    def _save_parent(self, study: Any) -> None:
        """Keep the parent run id in the Optuna study (once the writer has it)."""
        parent = self.writer.parent_run_id
        if parent and parent != self._saved_parent:
            try:
                study.set_user_attr(naming.PARENT_RUN_ATTR, parent)
                self._saved_parent = parent
            except Exception:  # noqa: BLE001
                logger.debug("could not store the MLflow parent run id", exc_info=True)


def _warm_up() -> None:
    """Import what the study's end needs (plots, the model flavour) while the trials train."""
    from orchestrator.tracking.plots import warm_up

    warm_up()
    try:
        import mlflow.pytorch  # noqa: F401
    except Exception:  # noqa: BLE001
        pass


def _set_aside(path: Path, index: int) -> Path:
    target = path.with_name(f"{path.name.split('.jsonl')[0]}.jsonl.recovered-{os.getpid()}-{index}")
    os.replace(path, target)
    return target


class _NoRecorder:
    """Stands in when recording is off or could not be set up."""

    parent_run_id = None

    def __init__(self) -> None:
        self.callback = Callback()

    def finish(self, study: Any, spec: Any, status: str | None = None) -> bool:
        return False


def _ending_status() -> str:
    """FINISHED, or KILLED / FAILED when called while an interruption or error propagates."""
    kind = sys.exc_info()[0]
    if kind is None:
        return "FINISHED"
    return "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"


def recorder_for(study: Any, spec: Any, experiment_name: str | None = None, **options: Any) -> StudyRecorder:
    """A recorder for ``study`` (not started), keeping its MLflow coordinates in the study's user
    attributes: tracking URI, experiment, study key, spool file and (once known) parent run id."""
    attrs = study.user_attrs
    uri = attrs.get(naming.TRACKING_URI_ATTR) or naming.absolute_tracking_uri(spec.tracking_uri)
    key = attrs.get(naming.STUDY_KEY_ATTR) or naming.new_study_key()
    experiment = attrs.get(naming.EXPERIMENT_ATTR) or naming.experiment_name(study.study_name, experiment_name)
    folder = Path(attrs[SPOOL_ATTR]).parent if attrs.get(SPOOL_ATTR) else spool_folder(spec)
    recorder = StudyRecorder(
        tracking_uri=uri,
        study_name=study.study_name,
        study_key=key,
        spool_folder=folder,
        experiment_name=experiment,
        parent_run_id=attrs.get(naming.PARENT_RUN_ATTR),
        parent_tags=study_run.parent_tags(spec),
        status_of=optuna_status(study),
        objective=spec.objective.metric,
        **options,
    )
    wanted = {naming.TRACKING_URI_ATTR: recorder.tracking_uri, naming.STUDY_KEY_ATTR: key,
              naming.EXPERIMENT_ATTR: experiment, SPOOL_ATTR: str(recorder.spool.path)}
    for name, value in wanted.items():
        if attrs.get(name) != value:
            study.set_user_attr(name, value)
    return recorder


def start_recording(study: Any, spec: Any, **options: Any) -> StudyRecorder | _NoRecorder:
    """Set up and start the study's recorder; never raises (a warning and no recording instead).
    ``STEPSIZE_TRACKING=off`` turns recording off."""
    if os.environ.get(DISABLE_ENV, "").lower() in ("off", "0", "false", "no"):
        return _NoRecorder()
    try:
        return recorder_for(study, spec, **options).begin(study, spec)
    except Exception as exc:  # noqa: BLE001
        logger.warning("MLflow recording of study %r is off: %s: %s", study.study_name, type(exc).__name__, exc)
        return _NoRecorder()


def optuna_status(study: Any) -> Callable[[int], naming.TrialStatus | None]:
    """Trial number -> its status in the Optuna storage (read after the searcher told it)."""

    def status_of(number: int) -> naming.TrialStatus | None:
        try:
            storage, study_id = study._storage, study._study_id
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
            return naming.trial_status(storage.get_trial(trial_id))
        except Exception:  # noqa: BLE001 - the end-of-study reconciliation fills it in
            return None

    return status_of


def spool_folder(spec: Any) -> Path:
    """The study's Ray results folder when it is local, else beside a SQLite Optuna storage, else
    ``~/.stepsize/spool``."""
    from orchestrator.checkpoints import local_study_folder

    folder = local_study_folder(spec)
    if folder is not None:
        return folder
    if spec.storage.startswith("sqlite:///"):
        return Path(os.path.expanduser(spec.storage[len("sqlite:///"):])).resolve().parent
    return Path.home() / ".stepsize" / "spool"


def replay_spool(study: Any, spec: Any) -> bool | None:
    """Write the records a study left in its spool (the tracking store was unreachable when it
    ended). None when there is nothing to write, else whether all of it was written."""
    path = study.user_attrs.get(SPOOL_ATTR)
    if not path:
        return None
    recorder = recorder_for(study, spec)
    if not Path(path).is_file() and not recorder._leftovers:
        return None
    recorder._take_leftovers()
    written = recorder.flush()
    recorder._save_parent(study)
    if written:
        shutil.rmtree(recorder.staging, ignore_errors=True)
    return written


def _lr_range_files(study: Any, spec: Any, folder: Path) -> list[Path]:
    """The LR range test's curve (plot and JSON) when ``lr_bounds: auto`` ran one."""
    import json

    from orchestrator.lr_bounds import LR_RANGE_ATTR
    from orchestrator.lr_finder import LRRangeResult, plot_lr_range

    record = study.user_attrs.get(LR_RANGE_ATTR)
    if not record:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "lr_range_test.json"
    data.write_text(json.dumps(record, indent=1), encoding="utf-8")
    plot = Path(plot_lr_range(LRRangeResult.from_dict(record["result"]), folder / "lr_range_test.png",
                              title=f"LR range test: {spec.name}"))
    return [plot, data]
