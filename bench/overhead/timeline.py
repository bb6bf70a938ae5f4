"""The overhead benchmark's stepsize workload: the built-in digits CNN
(``orchestrator.workloads.digits.train_cnn``), unchanged, with the time of every epoch's report
written to a file.

``workload: bench.overhead.timeline:digits_cnn`` with ``workload_options: {timeline: FOLDER}``: each
worker process appends JSON lines to ``FOLDER/<pid>.jsonl``: one when a trial's workload starts
(``entered``, wall-clock seconds) and one per epoch just before it is reported (``t``), with the
epoch's own training time and metrics. The benchmark reads them after ``launch`` returns.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from orchestrator.trial.context import TrialContext
from orchestrator.workloads.digits import train_cnn

KEPT = ("epoch_time_s", "val_loss", "val_accuracy", "train_loss")


class TimedTrial:
    """The trial's context as the workload sees it, writing down when each epoch is reported."""

    def __init__(self, trial: TrialContext, log: TextIO, batch_size: Any):
        self.trial = trial
        self.log = log
        self.batch_size = batch_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trial, name)

    def report(self, epoch: int | None = None, **metrics: float) -> None:
        row = {"trial": self.trial.number, "epoch": self.trial.epoch + 1 if epoch is None else int(epoch),
               "t": time.time(), "pid": os.getpid(), "batch_size": self.batch_size,
               **{key: float(metrics[key]) for key in KEPT if key in metrics}}
        self.log.write(json.dumps(row) + "\n")
        self.trial.report(epoch, **metrics)


def digits_cnn(config: dict[str, Any], trial: TrialContext) -> None:
    """``orchestrator.workloads.digits.train_cnn``, timed."""
    folder = Path(trial.options["timeline"])
    with open(folder / f"{os.getpid()}.jsonl", "a", buffering=1) as log:
        log.write(json.dumps({"trial": trial.number, "entered": time.time(), "pid": os.getpid()}) + "\n")
        train_cnn(config, TimedTrial(trial, log, config.get("batch_size")))  # type: ignore[arg-type]
