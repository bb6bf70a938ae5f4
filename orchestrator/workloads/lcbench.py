"""The ``lcbench`` workload: replays the YAHPO Gym lcbench surrogate as real trials.

The surrogate (an ONNX model, Apache-2.0) predicts the learning curve of an MLP trained with SGD
on one of 34 OpenML tasks, for a configuration of batch size, learning rate, momentum, weight
decay, layers, units and dropout. A trial predicts its whole curve in one batched call at its start
and reports one surrogate epoch per ``trial.report``: surrogate epochs 2-52 (epoch 1 is the
untrained model) become the trial's epochs 1-51, so run it with ``budget.max_epochs: 51``.

Each epoch reports ``val_accuracy`` (percent), ``val_cross_entropy`` (also as ``val_loss``),
``val_balanced_accuracy``, ``test_cross_entropy``, ``test_balanced_accuracy`` and
``epoch_time_s`` (the surrogate's predicted time of that epoch). Parameters the search space
leaves out take the surrogate's defaults (``config_space.json``); inputs are the raw values, as
YAHPO Gym feeds them (the model scales them itself).

``workload_options``:
    task: the OpenML task id (default ``"3945"``).
    data_dir: the folder with ``model.onnx``, ``encoding.json``, ``config_space.json`` and
        ``target_statistics.csv`` (default: ``$STEPSIZE_LCBENCH_DIR``, else ``../shared/data/lcbench``
        relative to the working folder).
    sleep_factor: sleep this many seconds per predicted second of each epoch (default 0: no sleep).
"""

from __future__ import annotations

import csv
import difflib
import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from orchestrator.errors import SpecError
from orchestrator.keys import Env
from orchestrator.trial.context import TrialContext

ENV_VAR = Env.LCBENCH_DIR
DEFAULT_DIR = "../shared/data/lcbench"
DEFAULT_TASK = "3945"
MAX_EPOCHS = 51  # surrogate epochs 2..52; epoch 1 is the untrained model
PARAMS = ("batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units", "max_dropout")
OUTPUTS = ("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy",
           "test_cross_entropy", "test_balanced_accuracy")
_FILES = ("model.onnx", "encoding.json", "config_space.json", "target_statistics.csv")


def data_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The surrogate's folder: the option, else ``$STEPSIZE_LCBENCH_DIR``, else the default."""
    return Path(option or os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser().resolve()


def missing_reason(option: str | os.PathLike[str] | None = None) -> str | None:
    """Why the surrogate cannot be loaded from ``option``'s folder, or None when it can."""
    folder = data_dir(option)
    absent = [name for name in _FILES if not (folder / name).is_file()]
    if not absent:
        return None
    return (f"the lcbench surrogate folder {folder} lacks {', '.join(absent)}. Point the workload option "
            f"`workload_options.data_dir` or the environment variable {ENV_VAR} at the folder that holds "
            f"{', '.join(_FILES)}.")


@dataclass(frozen=True)
class Surrogate:
    """The ONNX session and the metadata it needs, loaded once per process and folder."""

    folder: Path
    session: Any
    task_codes: Mapping[str, int]
    task_ids: tuple[str, ...]  # the tasks of config_space.json (the encoding has extra codes)
    defaults: Mapping[str, float]
    bounds: Mapping[str, tuple[float, float]]
    statistics: Mapping[tuple[str, str, str], float]  # (task, target, min|max) -> value

    @property
    def tasks(self) -> list[str]:
        return sorted(self.task_ids, key=int)

    def task_code(self, task: Any) -> int:
        """The model's code for OpenML task ``task``; :class:`SpecError` listing close ids if unknown."""
        name = str(task)
        if name not in self.task_ids:
            close = difflib.get_close_matches(name, self.tasks, n=3)
            hint = f"Did you mean {', '.join(close)}?" if close else None
            raise SpecError("workload_options.task", task, f"an lcbench OpenML task id ({', '.join(self.tasks)})", hint)
        return int(self.task_codes[name])

    def bound(self, task: Any, target: str) -> tuple[float, float]:
        """(min, max) of ``target`` on ``task`` from ``target_statistics.csv``."""
        return (self.statistics[(str(task), target, "min")], self.statistics[(str(task), target, "max")])

    def curve(self, task: Any, config: Mapping[str, Any], first: int = 1, last: int = MAX_EPOCHS) -> np.ndarray:
        """The predicted outputs (rows: trial epochs ``first..last``, epoch 0 being the untrained
        model; columns: :data:`OUTPUTS`, ``time`` cumulative in seconds)."""
        return self.curves(task, [config], first, last)[0]

    def curves(self, task: Any, configs: list[Mapping[str, Any]], first: int = 1, last: int = MAX_EPOCHS) -> np.ndarray:
        """Curves for several configurations in one call: shape [configs, epochs, outputs]."""
        code = self.task_code(task)
        epochs = np.arange(first, last + 1, dtype=np.float32) + 1.0  # trial epoch k = surrogate epoch k+1
        rows = [self._params(c) for c in configs]
        x_cont = np.concatenate([
            np.column_stack([epochs, np.tile(np.asarray(r, np.float32), (len(epochs), 1))]) for r in rows
        ]).astype(np.float32)
        x_cat = np.full((x_cont.shape[0], 1), code, dtype=np.int32)
        out = self.session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0]
        return out.reshape(len(configs), len(epochs), len(OUTPUTS))

    def _params(self, config: Mapping[str, Any]) -> list[float]:
        values = []
        for name in PARAMS:
            value = config.get(name, self.defaults[name])
            low, high = self.bounds[name]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise SpecError(f"search_space.{name}", value, f"a number from {low:g} to {high:g} (the surrogate's range)")
            values.append(float(value))
        return values


@functools.lru_cache(maxsize=4)
def load_surrogate(folder: str | os.PathLike[str] | None = None) -> Surrogate:
    """Load (once per process and folder) the surrogate; :class:`SpecError` if files are missing."""
    import onnxruntime as ort

    reason = missing_reason(folder)
    if reason:
        raise SpecError("workload_options.data_dir", str(data_dir(folder)), "the lcbench surrogate folder", reason)
    path = data_dir(folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"])
    codes = json.loads((path / "encoding.json").read_text())["OpenML_task_id"]
    space = json.loads((path / "config_space.json").read_text())["hyperparameters"]
    by_name = {hp["name"]: hp for hp in space}
    defaults = {name: float(by_name[name]["default"]) for name in PARAMS}
    bounds = {name: (float(by_name[name]["lower"]), float(by_name[name]["upper"])) for name in PARAMS}
    with open(path / "target_statistics.csv", newline="") as handle:
        stats = {(row["instance"], row["metric"], row["statistic"]): float(row["value"]) for row in csv.DictReader(handle)}
    tasks = tuple(str(t) for t in by_name["OpenML_task_id"]["choices"])
    return Surrogate(path, session, codes, tasks, defaults, bounds, stats)


def train(config: dict[str, Any], trial: TrialContext) -> None:
    """Report the surrogate's curve for ``config``, one epoch per report (resumes where it stopped)."""
    options = trial.options
    surrogate = load_surrogate(options.get("data_dir"))
    task = options.get("task", DEFAULT_TASK)
    sleep_factor = float(options.get("sleep_factor", 0.0))
    last = min(trial.max_epochs, MAX_EPOCHS)
    restore = getattr(trial, "restore", None)
    start = int(restore() or 0) if callable(restore) else 0
    if start >= last:
        return
    # One batched call; row 0 is the epoch before the first to report (epoch 0: the untrained
    # model), kept for its cumulative time so each epoch's own time is a difference.
    curve = surrogate.curve(task, config, first=start, last=last)
    times = curve[:, 0]
    for row, epoch in enumerate(range(start + 1, last + 1), start=1):
        epoch_time = float(times[row] - times[row - 1])
        if sleep_factor > 0:
            time.sleep(max(0.0, epoch_time) * sleep_factor)
        values = curve[row]
        trial.report(
            epoch=epoch,
            val_accuracy=float(values[1]),
            val_loss=float(values[2]),
            val_cross_entropy=float(values[2]),
            val_balanced_accuracy=float(values[3]),
            test_cross_entropy=float(values[4]),
            test_balanced_accuracy=float(values[5]),
            epoch_time_s=epoch_time,
        )
