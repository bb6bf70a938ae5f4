"""The ``stepsize`` command end to end, each in its own process with its own local Ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import ROOT

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]


def _run(args, cwd, timeout=900, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(STEPSIZE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _processes_using(folder: str) -> list[str]:
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if folder in cmdline:
            found.append(f"{process.pid}: {cmdline[:200]}")
    return found


def test_example_study_40_trials_meets_the_acceptance_bar(tmp_path):
    """`stepsize launch examples/digits.yaml --trials 40`: all COMPLETE or PRUNED, accuracy >= 0.95;
    the Ray it started is gone once it exits (left while the study's record was written)."""
    import tempfile
    import time

    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths live under it
    done = _run(["launch", str(ROOT / "examples" / "digits.yaml"), "--trials", "40",
                 "--results-dir", str(tmp_path / "ray")], cwd=tmp_path, env={"RAY_TMPDIR": ray_tmp})
    assert done.returncode == 0, done.stderr[-3000:]
    deadline = time.monotonic() + 30
    while _processes_using(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)  # Ray's processes end on SIGTERM, a moment after the command exits
    assert not _processes_using(ray_tmp), _processes_using(ray_tmp)
    assert os.listdir(ray_tmp), "Ray did not use RAY_TMPDIR: the check above saw nothing"
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "best configuration:" in done.stdout and "learning_rate:" in done.stdout
    assert "trials 40/40 done" in done.stderr  # the progress view, not Ray's tables
    assert "Trial status" not in done.stderr and "Traceback" not in done.stderr

    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path}/stepsize.db")
    trials = study.get_trials()
    assert len(trials) == 40
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.intermediate_values for t in pruned)
    accuracy = max(t.user_attrs["final_metrics"].get("val_accuracy", 0.0) for t in trials)  # diverged: none
    assert accuracy >= 0.95

    status = _run(["status", "digits", "--json"], cwd=tmp_path)
    assert status.returncode == 0
    states = json.loads(status.stdout)["states"]
    assert sum(states.values()) == 40 and "RUNNING" not in states

    best = _run(["best", "digits", "--format", "json"], cwd=tmp_path)
    best_yaml = _run(["best", "digits"], cwd=tmp_path)
    assert best.returncode == 0 and best_yaml.returncode == 0
    result = json.loads(best.stdout)
    assert result == yaml.safe_load(best_yaml.stdout)
    assert result["trial"] == study.best_trial.number
    assert result["config"] == study.best_trial.params
    assert result["value"] == study.best_value

    # The best trial's weights are an MLflow model on its run, and they score as recorded.
    import mlflow
    import torch

    from orchestrator.workloads.digits import load_digits_split

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("digits")
    best_run = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("stepsize.best") == "true"]
    assert len(best_run) == 1 and best_run[0].info.status == "FINISHED"
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    model = mlflow.pytorch.load_model(best_run[0].data.tags["stepsize.model_uri"])
    _, _, x_val, y_val = load_digits_split(0)
    with torch.no_grad():
        accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
    assert accuracy == pytest.approx(study.best_trial.user_attrs["final_metrics"]["val_accuracy"], abs=1e-6)


def test_user_workload_example_runs_from_its_folder(tmp_path):
    """The README's own-training-function example, launched from the folder that holds it."""
    shutil.copytree(ROOT / "examples" / "my_workloads", tmp_path / "my_workloads")
    shutil.copy(ROOT / "examples" / "custom.yaml", tmp_path / "custom.yaml")
    done = _run(["launch", "custom.yaml", "--trials", "6", "--quiet", "--results-dir", str(tmp_path / "ray")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("trials ") == 0  # --quiet: no progress view
    best = json.loads(_run(["best", "wine-logreg", "--format", "json"], cwd=tmp_path).stdout)
    assert best["metrics"]["val_accuracy"] > 0.8
    assert set(best["config"]) == {"learning_rate", "batch_size", "momentum"}
