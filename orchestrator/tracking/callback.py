"""The Ray Tune callback that records each trial as a child run of the study's parent run.

It runs on the driver only (trials report to Tune and nothing else) and only turns Tune's events
into records in a buffer; the flusher thread writes them in batches. Per trial:

- start: the run ``trial-NNN`` (NNN = Optuna trial number), nested under the parent, tagged with
  the trial number and Ray trial id, with the configuration as params (as ``stepsize best`` shows
  it: with ``lr_scaling`` on, ``learning_rate`` is the effective rate) and the param
  ``effective_learning_rate``;
- each result: the numeric metrics the workload reported, at step = the epoch (Tune's
  ``training_iteration``, which is also the step of Optuna's intermediate values); the first
  result adds the node (``node_ip``, ``hostname``, and the Ray ``node_id``, again whenever a
  retry moved the trial to another node), the GPU ids when the result carries ``gpu_ids``, and the effective learning rate when it carries ``effective_learning_rate``;
- end: the tag ``stepsize.status`` with the reason the searcher told Optuna (completed / pruned
  at epoch N / diverged ... / failed: ...), ``stepsize.state`` with the Optuna state, and the run
  ended as FINISHED (completed, pruned or diverged) or FAILED. Tune calls the searcher before its
  callbacks, so the Optuna trial is already told when this callback reads it.
"""

from __future__ import annotations

from typing import Any, Callable

from ray.tune import Callback

from orchestrator.credentials import protected_logger
from orchestrator.keys import TUNE_RESULT_KEYS, Config, Result, Tag
from orchestrator.tracking import naming, records
from orchestrator.tracking.values import numeric, params

logger = protected_logger("orchestrator.tracking")

# What Tune adds to every result, and the keys of a result that are not per-epoch metrics.
_NOT_METRICS = TUNE_RESULT_KEYS | {
    Result.EPOCH, Result.GPU_IDS, Result.DIVERGED, Result.TRIAL_FAILED, Result.ERROR, Result.NODE_ID,
}

StatusSource = Callable[[int], "naming.TrialStatus | None"]


class TrackingCallback(Callback):
    """Tune events -> MLflow records for the trials of one study.

    Args:
        sink: takes records (``StudyRecorder.add``).
        status_of: Optuna trial number -> its :class:`~orchestrator.tracking.naming.TrialStatus`
            (None when unknown).
        objective: the objective metric; in the report of a diverged trial its value is a
            penalty for the sampler, not a measurement, and is left out (the penalty is recorded
            as ``divergence_penalty``).
        on_end: called after a trial's end (and Tune's) is recorded.
    """

    def __init__(
        self,
        sink: Callable[..., None],
        status_of: StatusSource,
        objective: str | None = None,
        on_end: Callable[[], None] | None = None,
    ):
        self._sink = sink
        self._status_of = status_of
        self._objective = objective
        self._on_end = on_end
        self.shown_config: Callable[[dict[str, Any]], dict[str, Any]] = dict  # the study's view of a config
        self.started: set[int] = set()
        self._numbers: dict[str, int] = {}  # Ray trial id -> Optuna trial number
        self._described: set[int] = set()  # trials whose node / GPU / effective LR were recorded
        self._nodes: dict[int, list[str]] = {}  # trial number -> the Ray nodes it ran on, in order
        self.ended: dict[int, str] = {}  # trial number -> Optuna state recorded at its end

    # Tune pickles its run config (callbacks included) into the experiment folder; the recorder
    # (threads, clients) stays out of it and an unpickled copy records nothing.
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._sink = lambda *records: None
        self._status_of = lambda number: None
        self._objective = None
        self._on_end = None
        self.shown_config = dict
        self._numbers, self._described, self.ended, self.started = {}, set(), {}, set()
        self._nodes = {}

    # -- Tune hooks ----------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        try:
            number = self._number(trial)
            config = self.shown_config(
                {k: v for k, v in dict(trial.config).items() if not str(k).startswith(Config.PRIVATE_PREFIX)})
            tags = {Tag.RAY_TRIAL_ID: str(trial.trial_id), Tag.TRIAL_NUMBER: str(number),
                    Tag.STATE: "RUNNING", Tag.STATUS: "running"}
            if Config.RUNG_MODEL_EPOCH in trial.config:
                tags[Tag.RUNG_MODEL_EPOCH] = str(trial.config[Config.RUNG_MODEL_EPOCH])
            ref = naming.trial_ref(number)
            self.started.add(number)
            self._sink(records.open_run(ref, naming.trial_run_name(number), tags), records.params(ref, run_params(config)))
        except Exception:  # noqa: BLE001 - recording must never stop a study
            logger.debug("MLflow record of trial start failed", exc_info=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        try:
            self._result(trial, result)
        except Exception:  # noqa: BLE001
            logger.debug("MLflow record of a result failed", exc_info=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, error=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Tune is done; the study's end (reconciliation, best, plots) is recorded by
        # StudyRecorder.finish once the searcher has told Optuna about the trials still live.
        if self._on_end is not None:
            self._on_end()

    # -- records -------------------------------------------------------------------------------
    def _number(self, trial: Any) -> int:
        trial_id = str(trial.trial_id)
        if trial_id not in self._numbers:
            number = dict(getattr(trial, "config", None) or {}).get(Config.TRIAL_NUMBER)
            self._numbers[trial_id] = int(number) if number is not None else len(self._numbers)
        return self._numbers[trial_id]

    def _result(self, trial: Any, result: dict) -> None:
        step = result.get(Result.EPOCH)
        if step is None:
            return
        number = self._number(trial)
        ref = naming.trial_ref(number)
        values = {k: float(v) for k, v in result.items() if k not in _NOT_METRICS and numeric(v)}
        if result.get(Result.DIVERGED) and self._objective:
            values.pop(self._objective, None)
        out = []
        if number not in self._described:
            self._described.add(number)
            out.extend(self._description(ref, trial, result))
        out.extend(self._node(number, ref, result))
        if values:
            out.append(records.metrics(ref, int(step), values))
        if out:
            self._sink(*out)

    def _node(self, number: int, ref: str, result: dict) -> list[records.Record]:
        """``stepsize.node_id`` on the first result, and again when a retry moved the trial."""
        node = result.get(Result.NODE_ID)
        seen = self._nodes.setdefault(number, [])
        if not node or (seen and seen[-1] == node):
            return []
        seen.append(str(node))
        tags = {Tag.NODE_ID: str(node)}
        if len(seen) > 1:
            tags[Tag.NODE_IDS] = ",".join(seen)
        return [records.tags(ref, tags)]

    def _description(self, ref: str, trial: Any, result: dict) -> list[records.Record]:
        tags = {}
        if result.get(Result.NODE_IP):
            tags[Tag.NODE_IP] = str(result[Result.NODE_IP])
        if result.get(Result.HOSTNAME):
            tags[Tag.HOSTNAME] = str(result[Result.HOSTNAME])
        gpu_ids = result.get(Result.GPU_IDS)
        if gpu_ids is not None:
            tags[Tag.GPU_IDS] = ",".join(map(str, gpu_ids)) if isinstance(gpu_ids, (list, tuple)) else str(gpu_ids)
        out = [records.tags(ref, tags)] if tags else []
        config = dict(getattr(trial, "config", None) or {})
        if (Result.EFFECTIVE_LR not in config and not numeric(config.get("learning_rate"))
                and numeric(result.get(Result.EFFECTIVE_LR))):
            out.append(records.params(ref, {Result.EFFECTIVE_LR: repr(float(result[Result.EFFECTIVE_LR]))}))
        return out

    def _end(self, trial: Any, error: bool) -> None:
        try:
            number = self._number(trial)
            status = self._status_of(number)
            if status is None or not status.finished:
                # Not told yet (it will be at the study's end); record what Tune says meanwhile.
                status = naming.TrialStatus("FAIL" if error else "RUNNING", "failed" if error else "ended")
            self.record_end(number, status)
        except Exception:  # noqa: BLE001
            logger.debug("MLflow record of a trial end failed", exc_info=True)

    def record_end(self, number: int, status: "naming.TrialStatus") -> None:
        """Status tags, and the run ended when the trial's Optuna state is final."""
        ref = naming.trial_ref(number)
        out = [records.tags(ref, {Tag.STATUS: status.text, Tag.STATE: status.state})]
        if status.finished:
            out.append(records.close(ref, status.run_status))
            self.ended[number] = status.state
        self._sink(*out)
        if self._on_end is not None:
            self._on_end()


def run_params(config: dict[str, Any]) -> dict[str, str]:
    """A trial run's params: its configuration, and ``effective_learning_rate`` (the rate it
    trained at) when it has a ``learning_rate``."""
    out = params(config)
    if numeric(config.get("learning_rate")):
        out.setdefault(Result.EFFECTIVE_LR, repr(float(config["learning_rate"])))
    return out
