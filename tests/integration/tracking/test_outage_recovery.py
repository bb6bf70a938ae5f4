"""A real ``mlflow server`` stopped before a study ends, through the ``stepsize`` command:

- the driver ends while it is down: it says so, exits 0, and a background process it started
  completes the MLflow record (parent FINISHED, every child run with every epoch, the best model)
  once the server is back, with no other command run;
- the driver is SIGKILLed while the server is down: once the server is back, ``stepsize resume``
  completes the record (it replays the record log first) with every point once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

from orchestrator.keys import Tag
from orchestrator.tracking import naming
from tests.integration.run.test_user_mistakes import STEPSIZE, _env
from tests.tracking_support import MlflowServer, metric_points, runs_by_name

TRIALS, EPOCHS = 4, 4


@pytest.fixture(autouse=True)
def _client_answers_at_once(monkeypatch):
    """This test's own MLflow client calls fail fast while the server is down (not MLflow's
    minutes of HTTP retries); the driver and its background process keep their defaults."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.fixture
def server(tmp_path):
    srv = MlflowServer(tmp_path / "server")
    srv.folder.mkdir()
    srv.start()
    yield srv
    srv.stop()


def _study_file(folder: Path, name: str, uri: str) -> Path:
    data = {"name": name, "workload": "tests.workloads:sleeps_each_epoch", "workload_options": {"epoch_s": 1.0},
            "budget": {"trials": TRIALS, "max_epochs": EPOCHS}, "concurrency": 2, "scheduler": "none",
            "storage": f"sqlite:///{folder}/optuna.db", "tracking_uri": uri, "results_dir": str(folder / "ray")}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _epochs(folder: Path, name: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db")
    except Exception:  # noqa: BLE001 - not created yet
        return 0
    return sum(len(t.intermediate_values) for t in study.get_trials())


def _until(condition, timeout_s: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if condition():
            return time.monotonic() - began
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s} s")


def _record_complete(uri: str, name: str) -> bool:
    try:
        runs = runs_by_name(uri, name)
    except Exception:  # noqa: BLE001 - the server is still starting
        return False
    parent = runs.get(name)
    return parent is not None and parent.info.status == "FINISHED" and Tag.MODEL_URI in parent.data.tags


def _assert_record(uri: str, name: str) -> None:
    runs = runs_by_name(uri, name)
    assert runs[name].info.status == "FINISHED"
    assert Tag.BEST_RUN in runs[name].data.tags and Tag.MODEL_URI in runs[name].data.tags
    points = metric_points(uri, name)
    for number in range(TRIALS):
        child = runs[naming.trial_run_name(number)]
        assert child.info.status == "FINISHED", (number, child.info.status)
        for epoch in range(1, EPOCHS + 1):
            assert points[(naming.trial_run_name(number), "val_loss", epoch)] == 1, (number, epoch)
    assert runs[name].data.tags[Tag.MODEL_URI].startswith("models:/")


def test_a_study_that_ends_while_the_server_is_down_completes_its_record_later(server, tmp_path):
    study = _study_file(tmp_path, "mlfdown", server.url)
    env = {**_env(), "STEPSIZE_REPLAY_PATIENCE": "900"}  # a loaded machine may take minutes to restart the server
    driver = subprocess.Popen([*STEPSIZE, "launch", str(study), "--quiet"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    helper = None
    try:
        _until(lambda: _epochs(tmp_path, "mlfdown") >= 4, 120)
        server.stop()
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0, err[-3000:]
        line = next(line for line in err.splitlines() if "still unreachable at the end of study" in line)
        assert "a background process (pid" in line, line
        helper = int(re.search(r"pid (\d+)", line).group(1))
        time.sleep(5)
        assert not _record_complete(server.url, "mlfdown")
        server.start()
        took = _until(lambda: _record_complete(server.url, "mlfdown"), 120)
    finally:
        if driver.poll() is None:
            driver.kill()
    _assert_record(server.url, "mlfdown")
    _until(lambda: not os.path.exists(f"/proc/{helper}") or "Z" in Path(f"/proc/{helper}/stat").read_text().split()[2],
           30)
    print(f"record complete {took:.1f} s after the server was back\n{line}")


def test_after_a_driver_sigkill_resume_completes_the_record(server, tmp_path):
    study = _study_file(tmp_path, "mlfkill", server.url)
    driver = subprocess.Popen([*STEPSIZE, "launch", str(study), "--quiet"], cwd=tmp_path, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _until(lambda: _epochs(tmp_path, "mlfkill") >= 4, 120)
        server.stop()
        _until(lambda: _epochs(tmp_path, "mlfkill") >= 8, 60)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    server.start()
    began = time.monotonic()
    resumed = subprocess.run([*STEPSIZE, "resume", "mlfkill", "--storage", f"sqlite:///{tmp_path}/optuna.db",
                              "--quiet"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=150)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_record(server.url, "mlfkill")
    print(f"resume completed the record in {time.monotonic() - began:.1f} s")
