"""The writer: applies records to an MLflow tracking store through ``MlflowClient``, batched and
idempotent.

- One ``log_batch`` per run per flush carries all its new params, tags and metric points (MLflow's
  client splits it at 1,000 entities); never one call per metric.
- The parent run is found before one is created: by the id kept in the Optuna study, else by the
  tag ``stepsize.study_key`` in the experiment. A trial's run is found by the tag
  ``stepsize.trial_number`` under the parent (one search for all children of a parent that
  already existed) before one is created.
- Metric points already in MLflow for a (run, key, step) are not sent again: the writer keeps the
  logged steps of each run, read back from MLflow's metric history for a run it did not create in
  this process, or after a write to it failed midway.
- A failure to reach the store raises :class:`TrackingUnavailable` (the caller keeps the records
  and retries); a request the store refuses for good (a param that would change value, a deleted
  run) is logged and dropped so it cannot block the rest.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from orchestrator.credentials import connectable, expand, protected_logger, redact_text, without_userinfo
from orchestrator.errors import TrackingRefused, TrackingUnavailable
from orchestrator.keys import Tag
from orchestrator.tracking import naming
from orchestrator.tracking.records import Record, now_ms

logger = protected_logger("orchestrator.tracking")

# MLflow error codes that say the request itself is wrong: retrying cannot help.
_PERMANENT_CODES = {
    "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE", "BAD_REQUEST",
    "RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED", "UNAUTHENTICATED", "ENDPOINT_NOT_FOUND",
}
_SEARCH_PAGE = 1000
# Bounded HTTP retries for a remote tracking server (MLflow's defaults retry for minutes); set
# only where the user has not set them.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def is_permanent(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) in _PERMANENT_CODES


@dataclass
class _RunBatch:
    """One run's share of a flush."""

    open: Record | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)
    artifacts: list[Record] = field(default_factory=list)
    close: Record | None = None


class MlflowWriter:
    """Applies records for one study (one parent run and its trial runs).

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...`` or ``http(s)://...``).
        experiment_name: the experiment that holds the study's runs (created when missing).
        study_name: the parent run's name.
        study_key: the tag value that identifies this study's parent run.
        parent_run_id: the parent run id kept in the Optuna study, if any.
        parent_tags: tags for the parent run when it is created.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        study_name: str,
        study_key: str,
        parent_run_id: str | None = None,
        parent_tags: Mapping[str, str] | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.study_name = study_name
        self.study_key = study_key
        self.parent_run_id = parent_run_id
        self.experiment_id: str | None = None
        self.stats: Counter[str] = Counter()
        self._parent_tags = dict(parent_tags or {})
        self._parent_ready = False
        self._client_obj: Any = None
        self._runs: dict[str, str] = {}  # record reference ("trial:7") -> run id
        self._children_known = False  # all children of the parent have been searched for
        self._logged: dict[str, set[tuple[str, int]]] = {}  # run id -> (key, step) in MLflow
        self._uncertain: set[str] = set()  # runs whose logged steps must be read back first
        self._status: dict[str, str] = {}  # run id -> its MLflow status, as last read or set

    # -- public ------------------------------------------------------------------------------
    def reachable(self, timeout_s: float = 3.0) -> bool:
        """A quick check before a flush: the server's /health answers (always True for a
        database URI, whose errors show on the write itself)."""
        if not naming.is_http(self.tracking_uri):
            return True
        try:
            with urllib.request.urlopen(health_url(self.tracking_uri), timeout=timeout_s) as answer:
                return answer.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (OSError, ValueError):
            return False

    def apply(self, records: Iterable[Record]) -> None:
        """Write ``records`` (in order); raises :class:`TrackingUnavailable` when the store cannot
        be reached, after which applying the same records again writes nothing twice."""
        batches: dict[str, _RunBatch] = {}
        for record in records:
            self._add(batches.setdefault(record["run"], _RunBatch()), record)
        if not batches:
            return
        try:
            self._ensure_parent()
            for ref, batch in batches.items():
                run_id = self._resolve(ref, batch.open)
                if run_id is not None:
                    self._write(run_id, batch)
        except TrackingUnavailable:
            self._children_known = False  # a run may have been created without our hearing back
            raise

    def run_id(self, ref: str) -> str | None:
        return self.parent_run_id if ref == naming.PARENT_REF else self._runs.get(ref)

    # -- building one flush --------------------------------------------------------------------
    @staticmethod
    def _add(batch: _RunBatch, record: Record) -> None:
        op = record["op"]
        if op == "open":
            batch.open, batch.close = batch.open or record, None  # a run that runs again after an end
        elif op == "params":
            batch.params.update(record["params"])
        elif op == "tags":
            batch.tags.update(record["tags"])
        elif op == "metrics":
            step, ts = int(record["step"]), int(record["ts"])
            for key, value in record["values"].items():
                batch.metrics.setdefault((key, step), (ts, float(value)))  # the first report wins
        elif op == "close":
            batch.close = record
        elif op == "artifact":
            batch.artifacts.append(record)

    # -- MLflow calls ----------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._client_obj is None:
            from mlflow import MlflowClient

            if naming.is_http(self.tracking_uri):
                for key, value in HTTP_ENV_DEFAULTS.items():
                    os.environ.setdefault(key, value)
            # Not "View run ... at: URL" on stdout each time a trial's run ends.
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..."
                logging.getLogger(name).setLevel(logging.WARNING)
            uri = connectable(self.tracking_uri, "tracking_uri")
            self._client_obj = self._call(lambda: MlflowClient(tracking_uri=uri))
        return self._client_obj

    def _call(self, fn: Callable[[], Any], uncertain_run: str | None = None) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - sorted into refused (drop) and unreachable (retry)
            if is_permanent(exc):
                raise TrackingRefused(str(exc)) from exc
            if uncertain_run is not None:
                self._uncertain.add(uncertain_run)
            raise TrackingUnavailable(f"{type(exc).__name__}: {_first_line(exc)}") from exc

    def _ensure_experiment(self) -> str:
        if self.experiment_id is not None:
            return self.experiment_id
        client = self._client()
        experiment = self._call(lambda: client.get_experiment_by_name(self.experiment_name))
        if experiment is None:
            location = naming.artifact_location(self.tracking_uri, self.experiment_name)
            try:
                self.experiment_id = self._call(
                    lambda: client.create_experiment(self.experiment_name, artifact_location=location)
                )
            except TrackingRefused:  # created meanwhile by another process
                experiment = self._call(lambda: client.get_experiment_by_name(self.experiment_name))
                if experiment is None:
                    raise TrackingUnavailable(f"cannot create experiment {self.experiment_name!r}") from None
                self.experiment_id = experiment.experiment_id
        else:
            if experiment.lifecycle_stage == "deleted":
                self._call(lambda: client.restore_experiment(experiment.experiment_id))
            self.experiment_id = experiment.experiment_id
        return self.experiment_id

    def _ensure_parent(self) -> str:
        if self._parent_ready and self.parent_run_id:
            return self.parent_run_id
        experiment_id = self._ensure_experiment()
        client = self._client()
        found = None
        if self.parent_run_id:
            try:
                run = self._call(lambda: client.get_run(self.parent_run_id))
                if run.info.lifecycle_stage != "deleted":
                    found = run.info.run_id
                    self._status[found] = run.info.status
            except TrackingRefused:
                pass
            if found is None:
                logger.warning("MLflow parent run %s of study %r is gone; a new one is created.",
                               self.parent_run_id, self.study_name)
        if found is None:
            matches = self._call(lambda: client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{Tag.STUDY_KEY}` = '{self.study_key}' "
                              f"and tags.`{Tag.ROLE}` = 'study'",
                max_results=1,
            ))
            found = matches[0].info.run_id if matches else None
            if matches:
                self._status[found] = matches[0].info.status
        if found is None:
            tags = {**self._parent_tags, Tag.ROLE: "study", Tag.STUDY: self.study_name,
                    Tag.STUDY_KEY: self.study_key}
            run = self._call(lambda: client.create_run(experiment_id, tags=tags, run_name=self.study_name))
            self.parent_run_id = run.info.run_id
            self._logged[self.parent_run_id] = set()
            self._status[self.parent_run_id] = "RUNNING"
            self._children_known = True  # a new parent has no children yet
            self.stats["runs_created"] += 1
        else:
            self.parent_run_id = found
            self._children_known = False
            self._uncertain.add(found)
        self._parent_ready = True
        return self.parent_run_id

    def _load_children(self) -> None:
        client = self._client()
        parent = self.parent_run_id
        token = None
        while True:
            page = self._call(lambda: client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{Tag.PARENT}` = '{parent}'",
                max_results=_SEARCH_PAGE,
                page_token=token,
            ))
            for run in page:
                number = run.data.tags.get(Tag.TRIAL_NUMBER)
                if number is None or not number.isdigit():
                    continue
                ref = naming.trial_ref(int(number))
                if ref not in self._runs:
                    self._runs[ref] = run.info.run_id
                    self._uncertain.add(run.info.run_id)
                    self._status[run.info.run_id] = run.info.status
            token = page.token
            if not token:
                break
        self.stats["child_searches"] += 1
        self._children_known = True

    def _resolve(self, ref: str, open_record: Record | None) -> str | None:
        if ref == naming.PARENT_REF:
            return self.parent_run_id
        if ref in self._runs:
            return self._runs[ref]
        if not self._children_known:
            self._load_children()
            if ref in self._runs:
                return self._runs[ref]
        number = naming.ref_number(ref)
        if number is None:
            logger.warning("MLflow record for unknown run %r dropped", ref)
            return None
        open_record = open_record or {}
        tags = {
            **open_record.get("tags", {}),
            Tag.PARENT: self.parent_run_id,
            Tag.ROLE: "trial",
            Tag.STUDY: self.study_name,
            Tag.STUDY_KEY: self.study_key,
            Tag.TRIAL_NUMBER: str(number),
        }
        client = self._client()
        run = self._call(lambda: client.create_run(
            self.experiment_id,
            start_time=open_record.get("ts") or now_ms(),
            tags=tags,
            run_name=open_record.get("name") or naming.trial_run_name(number),
        ))
        self._runs[ref] = run.info.run_id
        self._logged[run.info.run_id] = set()
        self._status[run.info.run_id] = "RUNNING"
        self.stats["runs_created"] += 1
        return run.info.run_id

    def _reopen(self, run_id: str) -> None:
        """An ``open`` for an ended run: a resumed study's parent, or a trial run an interruption
        ended KILLED, is RUNNING again (a finished trial's run stays as it ended)."""
        status = self._status.get(run_id, "RUNNING")
        again = status != "RUNNING" if run_id == self.parent_run_id else status == naming.INTERRUPTED
        if again:
            client = self._client()
            self._call(lambda: client.update_run(run_id, status="RUNNING"), run_id)
            self._status[run_id] = "RUNNING"

    def _logged_steps(self, run_id: str) -> set[tuple[str, int]]:
        """(key, step) pairs already in MLflow for ``run_id``; read back when not known for sure."""
        if run_id in self._uncertain or run_id not in self._logged:
            client = self._client()
            run = self._call(lambda: client.get_run(run_id))
            logged: set[tuple[str, int]] = set()
            for key in run.data.metrics:
                history = self._call(lambda key=key: client.get_metric_history(run_id, key))
                logged.update((key, int(point.step)) for point in history)
            self._logged[run_id] = logged
            self._uncertain.discard(run_id)
            self.stats["histories_read"] += 1
        return self._logged[run_id]

    def _write(self, run_id: str, batch: _RunBatch) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client()
        if batch.open is not None:
            self._reopen(run_id)
        logged = self._logged_steps(run_id) if batch.metrics else self._logged.get(run_id, set())
        fresh = [(key, step) for key, step in batch.metrics if (key, step) not in logged]
        metrics = [Metric(key, batch.metrics[key, step][1], batch.metrics[key, step][0], step) for key, step in fresh]
        params = [Param(k, v) for k, v in batch.params.items()]
        tags = [RunTag(k, v) for k, v in batch.tags.items()]
        if metrics or params or tags:
            try:
                self._call(lambda: client.log_batch(run_id, metrics=metrics, params=params, tags=tags), run_id)
            except TrackingRefused as refused:
                self._write_apart(run_id, metrics, params, tags, refused)
            logged.update(fresh)
            self._logged.setdefault(run_id, logged)
            self.stats["batches"] += 1
            self.stats["metric_points"] += len(metrics)
        for item in batch.artifacts:
            if not os.path.isfile(item["path"]):
                logger.warning("MLflow artifact %s is gone; not uploaded", item["path"])
                continue
            try:
                self._call(lambda item=item: client.log_artifact(run_id, item["path"], item.get("dir")))
                self.stats["artifacts"] += 1
            except TrackingRefused as refused:
                logger.warning("MLflow refused artifact %s: %s", item["path"], refused)
        if batch.close is not None:
            close = batch.close
            try:
                self._call(lambda: client.set_terminated(run_id, status=close["status"], end_time=close["ts"]))
                self._status[run_id] = close["status"]
            except TrackingRefused as refused:
                logger.warning("MLflow refused to end run %s: %s", run_id, refused)

    def _write_apart(self, run_id: str, metrics: list, params: list, tags: list, refused: TrackingRefused) -> None:
        """A batch was refused: send params apart from metrics and tags so one bad param (a value
        that would change) costs only itself."""
        client = self._client()
        if params:
            try:
                self._call(lambda: client.log_batch(run_id, params=params), run_id)
            except TrackingRefused as again:
                logger.warning("MLflow refused params for run %s (dropped): %s", run_id, _first_line(again))
        if metrics or tags:
            try:
                self._call(lambda: client.log_batch(run_id, metrics=metrics, tags=tags), run_id)
            except TrackingRefused as again:
                logger.warning("MLflow refused metrics/tags for run %s (dropped): %s", run_id, _first_line(again))
        elif not params:
            logger.warning("MLflow refused a batch for run %s (dropped): %s", run_id, _first_line(refused))


def health_url(tracking_uri: str) -> str:
    """The tracking server's ``/health`` address (no user part: it needs no login)."""
    return without_userinfo(expand(tracking_uri)).rstrip("/") + "/health"


def _first_line(exc: BaseException) -> str:
    """The first line of an error's text, a password in a URL in it shown as ``***``."""
    text = redact_text(str(exc)).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
