"""The keeps-up benchmark's workload: epochs that only sleep, so a trial's own compute is known
exactly (``epoch_s`` seconds an epoch), and a deterministic val_loss from the configuration, so
the sampler has something to learn and ASHA stops some trials at its rungs.

Both arms run the same loop and write the same timeline: each worker process appends JSON lines
to ``<timeline>/<pid>.jsonl``, one when a trial's code is entered (``entered``, wall-clock seconds)
and one per epoch just before it is reported (``began``: the epoch's sleep started, ``t``: it ended,
so the time a worker waits in a report is the next epoch's ``began`` minus this ``t``).

* ``sleeps`` is the stepsize workload (``workload: bench.keeps_up.sleep_workload:sleeps`` with
  ``workload_options: {epoch_s: S, timeline: FOLDER}``), ``fn(config, trial)`` reporting through
  ``trial.report``.
* ``stock_trainable`` is what a Ray Tune user would write for the same thing: a function trainable
  whose config carries ``epoch_s``, ``max_epochs`` and ``timeline`` besides the searched values,
  calling ``tune.report`` every epoch.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, TextIO


def val_loss(config: dict[str, Any], epoch: int) -> float:
    """Lowest at learning_rate 0.01, momentum 0.9, batch size 64; falls as 1/epoch, the same for
    every configuration, so ASHA's rungs rank the configurations."""
    lr_gap = (math.log10(config["learning_rate"]) + 2.0) ** 2
    momentum_gap = 4.0 * (config["momentum"] - 0.9) ** 2
    batch_gap = 0.05 * abs(math.log2(config["batch_size"] / 64))
    return lr_gap + momentum_gap + batch_gap + 1.0 / epoch


def sleep_epochs(config: dict[str, Any], trial: Any, epoch_s: float, max_epochs: int, timeline: str,
                 report: Callable[[int, float], None]) -> None:
    """Sleep ``epoch_s`` per epoch for up to ``max_epochs`` epochs, writing each epoch to the
    timeline before handing it to ``report(epoch, val_loss)`` (which does not return when the
    scheduler stops the trial)."""
    pid = os.getpid()
    with open(Path(timeline) / f"{pid}.jsonl", "a", buffering=1) as log:
        _line(log, {"trial": trial, "entered": time.time(), "pid": pid})
        for epoch in range(1, max_epochs + 1):
            began = time.time()
            time.sleep(epoch_s)
            done = time.time()
            loss = val_loss(config, epoch)
            _line(log, {"trial": trial, "epoch": epoch, "began": began, "t": done, "pid": pid, "val_loss": loss})
            report(epoch, loss)


def _line(log: TextIO, row: dict[str, Any]) -> None:
    log.write(json.dumps(row) + "\n")


def sleeps(config: dict[str, Any], trial: Any) -> None:
    """The stepsize workload."""
    sleep_epochs(config, trial.number, float(trial.options["epoch_s"]), trial.max_epochs, trial.options["timeline"],
                 lambda epoch, loss: trial.report(epoch, val_loss=loss, train_loss=1.0 / epoch))


def stock_trainable(config: dict[str, Any]) -> None:
    """The stock Ray Tune trainable."""
    from ray import tune

    def report(epoch: int, loss: float) -> None:
        tune.report({"val_loss": loss, "train_loss": 1.0 / epoch, "epoch": epoch})

    sleep_epochs(config, tune.get_context().get_trial_id(), float(config["epoch_s"]), int(config["max_epochs"]),
                 config["timeline"], report)
