"""The reporting API for a training script that stepsize runs as its workload.

A study with ``workload: {script: train.py}`` runs the script once per trial, with the trial's
configuration as command-line flags (``--learning_rate 0.01 --batch_size 64``), as environment
variables (``STEPSIZE_PARAM_LEARNING_RATE``) and as a JSON file (:func:`config`). The script
reports each epoch with one call::

    from orchestrator.integrations.script import report
    report(epoch=epoch, train_loss=train_loss, val_loss=val_loss)

``report`` returns once the scheduler has decided the trial goes on; a trial it stops is ended
with SIGTERM (then SIGKILL) meanwhile. A script that cannot import stepsize may print the line
``STEPSIZE_REPORT {"epoch": 3, "val_loss": 0.41}`` instead (that form does not wait).

To be resumable, write the checkpoint into :func:`checkpoint_dir` before each ``report`` and load
:func:`resume_dir` at the start when it is set (then train from epoch :func:`start_epoch` + 1).
Outside a study every call still works: ``report`` prints the epoch to stderr, :func:`config` is
empty, and the checkpoint folder is ``./checkpoint``. This module imports only the standard library.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from typing import Any

from orchestrator.keys import ScriptEnv

__all__ = ["report", "config", "trial_info", "checkpoint_dir", "resume_dir", "start_epoch", "in_study"]

_last_epoch = 0


def in_study() -> bool:
    """True when this process runs as a stepsize trial."""
    return ScriptEnv.CONFIG_FILE in os.environ


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    path = os.environ.get(ScriptEnv.CONFIG_FILE)
    if not path:
        return {"config": {}, "trial": {}}
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def config() -> dict[str, Any]:
    """The trial's configuration (the searched values, learning rate scaled when ``lr_scaling``
    is on); empty outside a study."""
    return dict(_document()["config"])


def trial_info() -> dict[str, Any]:
    """The trial: ``number``, ``max_epochs``, ``seed``, ``device``, ``cpus`` and the study's
    ``options`` (its ``workload_options``); empty outside a study."""
    return dict(_document()["trial"])


def checkpoint_dir() -> str:
    """The folder to write this epoch's checkpoint files into before calling :func:`report`
    (created); a whole torch model saved there as ``model.pt`` is what MLflow logs for the best
    trial. Outside a study: ``./checkpoint``."""
    folder = os.environ.get(ScriptEnv.CHECKPOINT_DIR) or os.path.abspath("checkpoint")
    os.makedirs(folder, exist_ok=True)
    return folder


def resume_dir() -> str | None:
    """The checkpoint folder to continue from when the trial is resumed or retried, else None."""
    return os.environ.get(ScriptEnv.RESUME_DIR) or None


def start_epoch() -> int:
    """Epochs this trial already trained (those of :func:`resume_dir`; 0 for a fresh trial)."""
    return int(os.environ.get(ScriptEnv.START_EPOCH) or 0)


def report(epoch: int | None = None, **metrics: float) -> None:
    """Report one epoch's metrics (``train_loss``, ``val_loss``, ``val_accuracy``...); ``epoch``
    counts from 1 and defaults to the previous one plus one.

    Files in :func:`checkpoint_dir` are kept as this epoch's checkpoint. Returns when the
    scheduler lets the trial go on; when it stops the trial, this process is terminated.
    Raises ``ValueError`` for a metric that is not a number.
    """
    global _last_epoch
    epoch = (max(_last_epoch, start_epoch()) + 1) if epoch is None else int(epoch)
    values = {name: _number(name, value) for name, value in metrics.items()}
    _last_epoch = epoch
    line = json.dumps({"epoch": epoch, **values}, allow_nan=True)
    report_fd = os.environ.get(ScriptEnv.REPORT_FD)
    if report_fd is None:
        print(f"epoch {epoch}: " + ", ".join(f"{k}={v:.6g}" for k, v in values.items()), file=sys.stderr, flush=True)
        return
    os.write(int(report_fd), (line + "\n").encode())
    ack_fd = os.environ.get(ScriptEnv.ACK_FD)
    if ack_fd is not None and not os.read(int(ack_fd), 1):
        os._exit(1)  # the trial's worker is gone: nobody reads this trial's reports any more


def _number(name: str, value: Any) -> float:
    if hasattr(value, "item"):  # a tensor or a numpy scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"report({name}={value!r}): metrics must be numbers")
    return float(value)  # NaN and inf go through: the trial's divergence guard judges them
