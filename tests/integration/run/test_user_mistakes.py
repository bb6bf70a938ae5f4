"""The first mistakes users make, end to end through the ``stepsize`` command on real Ray, SQLite
and MLflow: each gets one clear paragraph, the right exit code, and nothing lost or left running.

- the objective metric is never reported: the study stops at the first report, exit 1;
- some trials raise: the first of each kind of error shows while the study runs, ``status``
  lists the failed trials and ``status --errors`` their tracebacks;
- every trial raises: exit 1, naming the error;
- Ctrl-C (SIGINT to the whole process group, as a terminal sends it): exit 130 within seconds,
  the running trials stay resumable, ``status`` says so, no process is left, the MLflow parent run
  ends KILLED, and ``resume`` finishes the study with nothing duplicated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator.keys import Tag
from orchestrator.study.storage import make_storage
from tests.conftest import ROOT
from tests.study_support import trials_if_created

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _study_file(folder: Path, name: str, workload: str, **fields) -> Path:
    data = {
        "name": name,
        "workload": workload,
        "budget": {"trials": 4, "max_epochs": 3},
        "concurrency": 2,
        "scheduler": "none",
        "storage": f"sqlite:///{folder}/optuna.db",
        "tracking_uri": f"sqlite:///{folder}/mlflow.db",
        "results_dir": str(folder / "ray"),
    }
    data.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(STEPSIZE + args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _trials(folder: Path, name: str) -> list:
    return optuna.load_study(study_name=name, storage=make_storage(f"sqlite:///{folder}/optuna.db")).get_trials()


def test_an_objective_never_reported_stops_the_study_at_the_first_report(tmp_path):
    study = _study_file(tmp_path, "metric", "tests.workloads:reports_val_accuracy",
                        objective={"metric": "val_acc", "mode": "max"},
                        budget={"trials": 12, "max_epochs": 5})
    done = _cli(["launch", str(study)], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("stepsize: `objective.metric` is 'val_acc', but trial ")
    assert "without it; the numbers it reported: epoch, train_loss, val_accuracy, val_loss. Set `objective.metric`" in message
    assert "launch the fixed study file with --new" in message
    assert "diverged" not in done.stderr and "Traceback" not in done.stderr
    trials = _trials(tmp_path, "metric")
    assert len(trials) <= 4, "stopped at the first report, not after the budget of 12"
    assert all(t.state == TrialState.FAIL for t in trials)
    assert all("val_acc" in t.user_attrs["stop_reason"] for t in trials)


def test_trial_errors_show_as_they_happen_and_in_status(tmp_path):
    study = _study_file(tmp_path, "some-fail", "tests.workloads:raises_above_lr", sampler="grid",
                        search_space={"learning_rate": {"type": "categorical", "choices": [0.01, 0.02, 0.1, 0.2]}},
                        workload_options={"max_lr": 0.05})
    done = _cli(["launch", str(study)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = [line for line in done.stderr.splitlines() if " failed: ValueError: learning rate" in line]
    assert len(shown) == 1, "the first of each kind of error once, while the study runs"
    assert shown[0].endswith("is too high for this model (the first trial with this error; full text: "
                             "stepsize status some-fail --errors)")
    assert "failed trials (2; whole texts: stepsize status some-fail --errors):" in done.stderr
    assert "(2 complete, 2 failed)" in done.stdout

    storage = f"sqlite:///{tmp_path}/optuna.db"
    status = _cli(["status", "some-fail", "--storage", storage], tmp_path)
    assert status.returncode == 0
    failed = [t.number for t in _trials(tmp_path, "some-fail") if t.state == TrialState.FAIL]
    for number in failed:
        assert f"  trial {number}: ValueError: learning rate " in status.stdout
    errors = _cli(["status", "some-fail", "--storage", storage, "--errors"], tmp_path)
    assert errors.stdout.count("Traceback (most recent call last)") == 2
    assert "raise ValueError(" in errors.stdout


def test_a_study_whose_every_trial_failed_exits_1_naming_the_error(tmp_path):
    study = _study_file(tmp_path, "all-fail", "tests.workloads:raises_above_lr", workload_options={"max_lr": 1e-9})
    done = _cli(["launch", str(study), "--quiet"], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "stepsize: study all-fail: every trial failed (4 of 4), so it has no best configuration. " \
           "Errors: ValueError: learning rate" in done.stderr
    assert "(4x)" in done.stderr and "Traceback" not in done.stderr
    assert "study all-fail: 4 trials (4 failed)" in done.stdout


def _group(pgid: int) -> set[int]:
    """The live (non-zombie) processes of process group ``pgid``."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and "\nState:\tZ" not in (entry / "status").read_text():
                members.add(int(entry.name))
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return members


def _running_with_an_epoch(folder: Path, name: str) -> int:
    trials = trials_if_created(f"sqlite:///{folder}/optuna.db", name)
    if trials is None:
        return 0  # not created yet
    return sum(1 for t in trials if t.state == TrialState.RUNNING and t.intermediate_values)


def test_ctrl_c_exits_130_leaves_trials_resumable_and_nothing_running(tmp_path):
    study = _study_file(tmp_path, "sigint", "tests.workloads:sleeps_each_epoch",
                        budget={"trials": 6, "max_epochs": 6}, workload_options={"epoch_s": 1.0})
    log = tmp_path / "launch.log"
    with open(log, "w") as out:
        # A session of its own: the signal goes to the driver and Ray's processes, as Ctrl-C does.
        driver = subprocess.Popen(STEPSIZE + ["launch", str(study)], cwd=tmp_path, env=_env(), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while _running_with_an_epoch(tmp_path, "sigint") == 0 and time.monotonic() < deadline:
            assert driver.poll() is None, log.read_text()[-3000:]
            time.sleep(0.25)
        group = _group(driver.pid)
        assert len(group) > 3, "the driver and Ray's processes"
        interrupted_at = time.monotonic()
        os.killpg(driver.pid, signal.SIGINT)
        code = driver.wait(120)
    took = time.monotonic() - interrupted_at
    text = log.read_text()
    assert code == 130, text[-3000:]
    assert took < 60, f"exited {took:.0f} s after Ctrl-C"
    assert "interrupted: stopping the running trials (they stay resumable)" in text
    assert "stepsize: study sigint interrupted: " in text and "Continue it with: stepsize resume sigint --storage" in text
    assert "Traceback" not in text
    time.sleep(5)
    left = _group(driver.pid)
    assert not left, f"processes left running after Ctrl-C: {left}"

    trials = _trials(tmp_path, "sigint")
    running = [t for t in trials if t.state == TrialState.RUNNING]
    assert running, "the trials that were running stay RUNNING, to be resumed"
    storage = f"sqlite:///{tmp_path}/optuna.db"
    status = _cli(["status", "sigint", "--storage", storage], tmp_path)
    assert f"{len(running)} interrupted, resumable" in status.stdout and " running" not in status.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.search_experiments()[0].experiment_id
    parents = client.search_runs([experiment], filter_string=f"tags.`{Tag.ROLE}` = 'study'")
    assert [run.info.status for run in parents] == ["KILLED"]

    resumed = _cli(["resume", "sigint", "--storage", storage], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = _trials(tmp_path, "sigint")
    assert len(trials) == 6 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert sorted(t.number for t in trials) == list(range(6))
    for trial in trials:
        assert sorted(trial.intermediate_values) == list(range(1, 7)), "every epoch told once"
    assert any(t.user_attrs.get("resumed_from_epoch", 0) >= 1 for t in trials), "continued from a checkpoint"
    parents = client.search_runs([experiment], filter_string=f"tags.`{Tag.ROLE}` = 'study'")
    assert [run.info.status for run in parents] == ["FINISHED"]


def test_a_trial_no_node_can_hold_is_refused_instead_of_waiting_for_ever(tmp_path):
    study = _study_file(tmp_path, "gpu", "tests.workloads:quadratic", resources={"cpus": 1, "gpu": 1})
    began = time.monotonic()
    done = _cli(["launch", str(study), "--quiet"], tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert time.monotonic() - began < 120
    assert "stepsize: invalid study spec: `resources` is {'cpus': 1.0, 'gpu': 1.0, 'workers': 1}; expected what one " \
           "node of the Ray cluster can hold. `resources.gpu` asks 1 GPU per trial, but the largest Ray node has 0 " \
           "(Ray on this machine), so no trial could ever start." in done.stderr
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
