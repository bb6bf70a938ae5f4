"""A real PostgreSQL storage stopped while a study runs, through the ``stepsize`` command:

- down for ~20 s (within ``storage_patience``): one line when the driver starts waiting, one when
  the storage is back; the study completes its budget with every trial's curve (epochs
  1..max_epochs) in Optuna exactly once;
- down for longer than a short ``storage_patience``: exit 1 with one paragraph naming the cause and
  the resume command; after the server is back, that command completes the study, nothing lost.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from tests.integration.run.test_user_mistakes import STEPSIZE, _env

TRIALS, EPOCHS = 4, 8


def _study_file(folder: Path, name: str, storage: str, **fields) -> Path:
    data = {
        "name": name, "workload": "tests.workloads:sleeps_each_epoch", "workload_options": {"epoch_s": 1.0},
        "budget": {"trials": TRIALS, "max_epochs": EPOCHS}, "concurrency": 2, "scheduler": "none",
        "storage": storage, "tracking_uri": f"sqlite:///{folder}/mlflow.db", "results_dir": str(folder / "ray"),
        **fields,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _trials(url: str, name: str) -> list:
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def _wait_for_epochs(url: str, name: str, epochs: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if sum(len(t.intermediate_values) for t in _trials(url, name)) >= epochs:
                return
        except Exception:  # noqa: BLE001 - the study is not created yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"no {epochs} epochs reported in {timeout_s} s")


def _assert_complete(url: str, name: str) -> None:
    trials = _trials(url, name)
    assert len(trials) == TRIALS, [t.state for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    for trial in trials:
        assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1)), (trial.number, trial.intermediate_values)


def test_a_20_s_storage_outage_is_ridden_out(own_postgres, tmp_path):
    url = own_postgres.database("outage")
    study = _study_file(tmp_path, "pgdown", url, storage_patience=2)  # 2 minutes
    driver = subprocess.Popen([*STEPSIZE, "launch", str(study), "--quiet"], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_epochs(url, "pgdown", 3)
        own_postgres.halt()
        stopped = time.monotonic()
        time.sleep(20)
        own_postgres.restart()
        back = time.monotonic()
        out, err = driver.communicate(timeout=150)
    finally:
        if driver.poll() is None:
            driver.kill()
    done = time.monotonic()
    assert driver.returncode == 0, err[-3000:]
    waiting = [line for line in err.splitlines() if "does not answer" in line and "Optuna storage" in line]
    backs = [line for line in err.splitlines() if "Optuna storage" in line and "is back after" in line]
    assert len(waiting) == 1 and len(backs) == 1, err[-3000:]
    assert "storage_patience" in waiting[0] and "postgresql+psycopg://postgres@127.0.0.1" in waiting[0]
    waited = float(re.search(r"is back after ([\d.]+) s", backs[0]).group(1))
    assert 10 < waited < 40, backs[0]
    assert "StorageInternalError" not in err and "Traceback" not in err, err[-3000:]
    _assert_complete(url, "pgdown")
    print(f"outage 20 s: driver waited {waited:.1f} s; finished {done - back:.1f} s after the server was back "
          f"({done - stopped:.1f} s after it stopped)\n{waiting[0]}\n{backs[0]}")


def test_past_its_patience_the_driver_gives_up_and_resume_completes(own_postgres, tmp_path):
    url = own_postgres.database("giveup")
    study = _study_file(tmp_path, "pggone", url, storage_patience="5s")
    driver = subprocess.Popen([*STEPSIZE, "launch", str(study), "--quiet"], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_epochs(url, "pggone", 3)
        own_postgres.halt()
        stopped = time.monotonic()
        out, err = driver.communicate(timeout=90)
    finally:
        if driver.poll() is None:
            driver.kill()
    exited = time.monotonic() - stopped
    own_postgres.restart()
    assert driver.returncode == 1, err[-3000:]
    message = next(line for line in err.splitlines() if line.startswith("stepsize: the Optuna storage"))
    assert message.startswith("stepsize: the Optuna storage at postgresql+psycopg://postgres@127.0.0.1"), err[-3000:]
    assert "storage_patience" in message and "Nothing is lost" in message
    assert "Traceback" not in err and "StorageInternalError" not in err, err[-3000:]
    command = re.search(r"with: (stepsize resume \S+ --storage \S+)", message).group(1)
    trials = _trials(url, "pggone")
    assert any(t.state == TrialState.RUNNING for t in trials), "the running trials stay RUNNING for resume"
    args = shlex.split(command)[1:]
    resumed = subprocess.run([*STEPSIZE, *args, "--quiet"], cwd=tmp_path, env=_env(), capture_output=True,
                             text=True, timeout=150)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_complete(url, "pggone")
    print(f"gave up {exited:.1f} s after the server stopped (patience 5 s)\n{message}")
