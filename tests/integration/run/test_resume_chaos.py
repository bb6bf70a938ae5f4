"""Kill the driver with SIGKILL at three random moments and resume each time: the study ends with
exactly its budget of finished trials, one MLflow child run per trial, no (run, metric, step)
twice, every epoch recorded once, and the same best trial in Optuna, MLflow and ``stepsize best``.
Also with Ray's results folder deleted before a resume, and on PostgreSQL."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator.keys import StudyAttr, Tag
from orchestrator.study.storage import make_storage
from orchestrator.tracking import naming
from tests.conftest import ROOT
from tests.study_support import trials_if_created
from tests.tracking_support import metric_points, runs_by_name

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]
TRIALS = 30
KILL_AFTER_FINISHED = (4, 12, 20)  # kill once the study has this many finished trials, plus a random delay
SPARE_KILLS = (24, 27)  # further kills while none has caught a trial mid-way (epochs here take ~30 ms)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _finished(storage: str, name: str) -> tuple[int, int, int]:
    """Trials finished, running, and running with at least one epoch told (so checkpointed)."""
    trials = trials_if_created(storage, name)
    if trials is None:
        return 0, 0, 0  # the driver has not yet created the study, or is creating the schema right now
    running = [t for t in trials if t.state == TrialState.RUNNING]
    return sum(t.state.is_finished() for t in trials), len(running), sum(bool(t.intermediate_values) for t in running)


def _run_and_kill(command: list[str], cwd: Path, storage: str, name: str, kill_at: int | None, rng: random.Random,
                  log: Path) -> dict:
    """Run ``command``; SIGKILL it once ``kill_at`` trials have finished, 0-1.5 s later, at a moment
    when a trial is in the middle of its epochs (it has told one and so has a checkpoint): on a
    loaded machine the random moment alone can fall between trials, and then no kill interrupts a
    trial that could continue from a checkpoint."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            if kill_at is not None and _finished(storage, name)[0] >= kill_at:
                time.sleep(rng.uniform(0.0, 1.5))
                waited = time.monotonic() + 20
                while _finished(storage, name)[2] == 0 and process.poll() is None and time.monotonic() < waited:
                    time.sleep(0.02)
                process.send_signal(signal.SIGKILL)
                process.wait(60)
                # Read after the kill: the dead driver tells Optuna nothing more, so this is what
                # the resume finds (a trial seen mid-way a moment before may have ended since).
                finished, running, checkpointed = _finished(storage, name)
                return {"killed": True, "finished": finished, "running": running, "checkpointed": checkpointed}
            time.sleep(0.25)
        if process.poll() is None:
            process.kill()
            pytest.fail(f"{command} did not finish in time; log: {log.read_text()[-3000:]}")
    assert process.returncode == 0, log.read_text()[-3000:]
    return {"killed": False}


def _remove(folder: Path) -> None:
    """Delete a folder that workers of the killed driver may still be writing into."""
    for _ in range(60):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.5)
    raise AssertionError(f"{folder} could not be deleted")


def _chaos(tmp_path: Path, storage: str, tracking_uri: str, delete_ray_folder_before: int | None, seed: int) -> None:
    name = "chaos"
    study = {
        "name": name, "workload": "digits_mlp", "workload_options": {"hidden": 32}, "seed": seed,
        "budget": {"trials": TRIALS, "max_epochs": 6}, "concurrency": 2,
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "storage": storage, "tracking_uri": tracking_uri, "results_dir": str(tmp_path / "ray"),
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    rng = random.Random(seed)
    log = tmp_path / "driver.log"
    kills = []
    command = STEPSIZE + ["launch", "study.yaml", "--quiet"]
    planned, spare = list(KILL_AFTER_FINISHED), list(SPARE_KILLS)
    index = 0
    while True:
        if planned:
            kill_at = planned.pop(0)
        elif spare and not any(k["checkpointed"] for k in kills):
            kill_at = spare.pop(0)  # no kill has yet caught a trial mid-way: one more
        else:
            kill_at = None
        if index and index == delete_ray_folder_before:
            _remove(tmp_path / "ray")  # a new machine with the same database
        outcome = _run_and_kill(command, tmp_path, storage, name, kill_at, rng, log)
        index += 1
        command = STEPSIZE + ["resume", name, "--storage", storage, "--quiet"]
        if kill_at is None:
            break
        assert outcome["killed"], f"the study ended before it could be killed at {kill_at} finished trials"
        kills.append(outcome)
    assert len(kills) >= 3
    assert any(k["running"] for k in kills), "no kill landed while trials were running"
    assert any(k["checkpointed"] for k in kills), f"no kill caught a trial with a checkpoint: {kills}"
    _check_record(tmp_path, storage, tracking_uri, name)


def _check_record(tmp_path: Path, storage: str, tracking_uri: str, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=make_storage(storage))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == TRIALS
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}, [t.state for t in trials]
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)) and steps, (trial.number, steps)
        assert trial.user_attrs["epochs"] == steps[-1]

    experiment = naming.experiment_name(name, None)
    runs = runs_by_name(tracking_uri, experiment)  # asserts one run per name
    parents = [r for r in runs.values() if r.data.tags.get(Tag.ROLE) == "study"]
    children = {int(r.data.tags[Tag.TRIAL_NUMBER]): r for r in runs.values()
                if r.data.tags.get(Tag.ROLE) == "trial"}
    assert len(parents) == 1 and len(children) == TRIALS == len(runs) - 1
    assert study.user_attrs[StudyAttr.MLFLOW_PARENT_RUN] == parents[0].info.run_id
    points = metric_points(tracking_uri, experiment)
    duplicated = {key: count for key, count in points.items() if count != 1}
    assert not duplicated, duplicated
    for trial in trials:
        logged = sorted(step for (run, key, step) in points if run == f"trial-{trial.number:03d}" and key == "val_loss")
        expected = sorted(trial.intermediate_values)
        if trial.user_attrs.get("diverged"):
            expected = expected[:-1]
        assert logged == expected, (trial.number, logged, expected)
        assert children[trial.number].data.tags[Tag.STATE] == trial.state.name

    best = json.loads(subprocess.run(STEPSIZE + ["best", name, "--storage", storage, "--format", "json"], cwd=tmp_path,
                                     env=_env(), capture_output=True, text=True, check=True).stdout)
    assert best["trial"] == study.best_trial.number and best["value"] == pytest.approx(study.best_value)
    parent = MlflowClient(tracking_uri=tracking_uri).get_run(parents[0].info.run_id)
    assert parent.data.tags[Tag.BEST_TRIAL] == str(best["trial"])
    assert parent.data.metrics[f"best.{best['metric']}"] == pytest.approx(best["value"])
    best_params = {k[len("best."):]: v for k, v in parent.data.params.items() if k.startswith("best.")}
    assert best_params == {k: str(v) for k, v in best["config"].items()}


def test_sigkill_three_times_and_resume_loses_and_duplicates_nothing(tmp_path):
    _chaos(tmp_path, f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db", None, seed=1)
    study = optuna.load_study(study_name="chaos", storage=make_storage(f"sqlite:///{tmp_path}/optuna.db"))
    resumed = [t for t in study.trials if t.user_attrs.get("resumed_from_epoch")]
    assert resumed, "no interrupted trial continued from a checkpoint"


def test_resume_with_the_ray_folder_deleted_keeps_finished_trials(tmp_path):
    _chaos(tmp_path, f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db", 2, seed=2)


def test_sigkill_and_resume_on_postgresql(tmp_path, postgres):
    _chaos(tmp_path, postgres.database("optuna"), postgres.database("mlflow"), None, seed=3)
