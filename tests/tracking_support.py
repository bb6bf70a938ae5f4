"""Helpers for the MLflow record tests (no tests here; unit and integration tests import them):
Tune-like trials, driving the callback, a real ``mlflow server`` on 127.0.0.1, and reading the
record back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.keys import Config
from orchestrator.run.simulate import SimulatedTrial
from orchestrator.tracking import naming
from orchestrator.tracking.recorder import StudyRecorder


def fake_trial(number: int, lr: float = 0.01) -> SimulatedTrial:
    """What Tune callbacks read from a trial: id, config (with the Optuna trial number)."""
    return SimulatedTrial(f"t{number:05d}", {"learning_rate": lr, "batch_size": 32, Config.TRIAL_NUMBER: number})


def result(epoch: int, **extra: float) -> dict[str, Any]:
    return {
        "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch, "val_accuracy": 1 - 0.5 / epoch, "lr": 0.01,
        "epoch_time_s": 0.1, "epoch": epoch, "training_iteration": epoch, "node_ip": "127.0.0.1",
        "hostname": "here", "time_this_iter_s": 0.1, "done": False, **extra,
    }


def completed(number: int) -> naming.TrialStatus:
    return naming.TrialStatus("COMPLETE", "completed")


def make_recorder(uri: str, folder: Path, key: str = "k" * 32, parent: str | None = None, **kw: Any) -> StudyRecorder:
    kw.setdefault("status_of", completed)
    kw.setdefault("interval_s", 3600.0)  # tests flush by hand
    return StudyRecorder(tracking_uri=uri, study_name="synthetic", study_key=key, log_folder=folder,
                         parent_run_id=parent, objective="val_loss", **kw)


def drive(recorder: StudyRecorder, number: int, epochs: range, start: bool = True, end: bool = False) -> None:
    trial = fake_trial(number)
    callback = recorder.callback
    if start:
        callback.on_trial_start(iteration=0, trials=[], trial=trial)
    for epoch in epochs:
        callback.on_trial_result(iteration=epoch, trials=[], trial=trial, result=result(epoch))
    if end:
        callback.on_trial_complete(iteration=0, trials=[], trial=trial)


def metric_points(uri: str, experiment: str) -> dict[tuple[str, str, int], int]:
    """(run name, key, step) -> how many points MLflow holds, for every run of ``experiment``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    counts: Counter = Counter()
    if exp is None:
        return {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        for key in run.data.metrics:
            for point in client.get_metric_history(run.info.run_id, key):
                counts[(run.info.run_name, key, int(point.step))] += 1
    return dict(counts)


def runs_by_name(uri: str, experiment: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    names = Counter(r.info.run_name for r in runs)
    assert all(n == 1 for n in names.values()), f"duplicate runs: {names}"
    return {r.info.run_name: r for r in runs}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` (SQLite backend, artifacts proxied) on 127.0.0.1 that a test can
    stop and start again on the same port and database."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_uri = f"sqlite:///{folder}/server.db"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.db_uri,
             "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("mlflow server did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None
