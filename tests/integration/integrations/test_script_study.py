"""A plain argparse training script as the workload, end to end through the ``stepsize`` command on
real Ray, SQLite and MLflow: it trains, pruned trials' scripts are gone within seconds (checked by
PID), a failing script's last lines are its trial's error, and an interrupted trial resumes from
the checkpoint the script wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator.keys import Tag
from tests.conftest import ROOT
from tests.integration.run.test_user_mistakes import STEPSIZE, _cli, _env, _group, _running_with_an_epoch, _trials
from tests.integration.run.test_user_mistakes import _study_file as study_file

SCRIPT = str(ROOT / "tests" / "scripts" / "argparse_train.py")


def _study_file(folder: Path, name: str, args: list[str], **fields) -> Path:
    workload = {"script": SCRIPT, "args": args, "flags": {"max_epochs": "--epochs"}}
    space = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}}
    return study_file(folder, name, workload, **{"search_space": space, **fields})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except (ProcessLookupError, FileNotFoundError):  # gone, also between the two looks
        return False


def test_a_script_study_trains_prunes_and_its_pruned_scripts_are_gone_within_seconds(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    study = _study_file(tmp_path, "script", ["--pid_dir", str(pids), "--sleep", "0.4"],
                        budget={"trials": 10, "max_epochs": 6},
                        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3})
    gone_at: dict[int, float] = {}
    seen: set[int] = set()
    with open(tmp_path / "launch.log", "w") as out:
        driver = subprocess.Popen(STEPSIZE + ["launch", str(study)], cwd=tmp_path, env=_env(), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 400
        while driver.poll() is None and time.monotonic() < deadline:
            seen.update(int(p.stem) for p in pids.glob("*.pid"))
            for pid in seen - set(gone_at):
                if not _alive(pid):
                    gone_at[pid] = time.time()
            time.sleep(0.05)
        code = driver.wait(60)
    log = (tmp_path / "launch.log").read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log

    trials = _trials(tmp_path, "script")
    assert len(trials) == 10 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.intermediate_values for t in pruned), "pruned trials carry their curves"
    assert any(t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == list(range(1, 7)) for t in trials)

    # Each trial's script by PID: the pruned ones ended within seconds of their trial's end.
    lr_of = {int(p.stem): float(p.read_text().split()[0]) for p in pids.glob("*.pid")}
    assert len(lr_of) == 10
    for trial in pruned:
        [pid] = [pid for pid, lr in lr_of.items() if lr == trial.params["learning_rate"]]
        assert pid in gone_at, f"trial {trial.number}'s script (pid {pid}) is still running"
        lag = gone_at[pid] - trial.datetime_complete.timestamp()
        assert lag < 5.0, f"trial {trial.number}'s script ended {lag:.1f} s after the trial was pruned"
    assert not any(_alive(pid) for pid in lr_of), "no script outlives the study"

    # The per-epoch curves in MLflow, one point per reported epoch.
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.search_experiments()[0].experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.`{Tag.ROLE}` = 'trial'")
    assert len(runs) == 10
    for run in runs:
        number = int(run.data.tags[Tag.TRIAL_NUMBER])
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == sorted(trials[number].intermediate_values)
    [parent] = client.search_runs([experiment], filter_string=f"tags.`{Tag.ROLE}` = 'study'")
    assert parent.data.tags[Tag.WORKLOAD] == f"script {SCRIPT}"


def test_a_failing_script_fails_its_trial_with_its_last_lines(tmp_path):
    study = _study_file(tmp_path, "script-fail", ["--fail_above_lr", "1e-9"], budget={"trials": 2, "max_epochs": 2})
    done = _cli(["launch", str(study), "--quiet"], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "every trial failed (2 of 2)" in done.stderr
    assert "exited with code 1 after epoch 0: learning rate" in done.stderr
    assert "is above 1e-09: refusing to train" in done.stderr and "Traceback" not in done.stderr
    errors = _cli(["status", "script-fail", "--storage", f"sqlite:///{tmp_path}/optuna.db", "--errors"], tmp_path)
    assert errors.stdout.count("| epoch 1: starting") == 2, errors.stdout[-3000:]
    assert all(t.state == TrialState.FAIL for t in _trials(tmp_path, "script-fail"))


def test_an_interrupted_script_trial_resumes_from_its_checkpoint(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    study = _study_file(tmp_path, "script-resume", ["--pid_dir", str(pids), "--sleep", "1.0"],
                        budget={"trials": 2, "max_epochs": 5})
    with open(tmp_path / "launch.log", "w") as out:
        driver = subprocess.Popen(STEPSIZE + ["launch", str(study)], cwd=tmp_path, env=_env(), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while _running_with_an_epoch(tmp_path, "script-resume") < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, (tmp_path / "launch.log").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1.2)  # a second epoch, and its checkpoint
        os.killpg(driver.pid, signal.SIGINT)
        assert driver.wait(120) == 130, (tmp_path / "launch.log").read_text()[-3000:]
    time.sleep(3)
    assert not _group(driver.pid), "no script left running after Ctrl-C"
    first_run = {int(p.stem) for p in pids.glob("*.pid")}
    assert not any(_alive(pid) for pid in first_run)
    # On a loaded machine one trial may finish all its epochs before the interrupt lands.
    interrupted = [t.number for t in _trials(tmp_path, "script-resume") if t.state != TrialState.COMPLETE]
    assert interrupted, "the interrupt left a trial to resume"

    resumed = _cli(["resume", "script-resume", "--storage", f"sqlite:///{tmp_path}/optuna.db"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = _trials(tmp_path, "script-resume")
    assert len(trials) == 2 and {t.state for t in trials} == {TrialState.COMPLETE}
    for trial in trials:
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4, 5], "every epoch told once"
    starts = [int(p.read_text().split()[1]) for p in pids.glob("*.pid") if int(p.stem) not in first_run]
    assert len(starts) == len(interrupted) and all(start >= 2 for start in starts), \
        f"{len(interrupted)} interrupted trials; resumed scripts started at epochs {starts}"
