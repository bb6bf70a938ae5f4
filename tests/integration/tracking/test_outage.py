"""A tracking-server outage: the study goes on, records wait in the record log on disk, one warning
is given, and once the server is back every reported point is in MLflow exactly once. Uses a real
``mlflow server`` (SQLite backend) on 127.0.0.1, stopped and started again on the same port."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from orchestrator import TrialContext
from orchestrator.tracking import naming
from tests.tracking_support import (
    MlflowServer,
    drive,
    make_recorder,
    metric_points,
    runs_by_name,
)

KEYS = {"train_loss", "val_loss", "val_accuracy", "lr", "epoch_time_s"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module (starting one takes seconds); each test stops and restarts it."""
    srv = MlflowServer(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()


def _warnings(caplog, text):
    return [r for r in caplog.records if r.name == "orchestrator.tracking" and text in r.getMessage()]


def test_synthetic_results_during_an_outage_land_exactly_once(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="orchestrator.tracking")
    recorder = make_recorder(server.url, tmp_path / "log")
    drive(recorder, 0, range(1, 4))
    drive(recorder, 1, range(1, 3))
    assert recorder.flush()

    server.stop()
    drive(recorder, 0, range(4, 6), start=False, end=True)
    drive(recorder, 2, range(1, 4))
    started = time.monotonic()
    assert not recorder.flush()
    drive(recorder, 1, range(3, 6), start=False, end=True)
    assert not recorder.flush() and not recorder.flush()
    assert time.monotonic() - started < 60, "an outage must not stall the flushes"
    assert recorder.log.backlog() and recorder.log.waiting() > 0  # the records wait on disk
    assert len(_warnings(caplog, "is unreachable")) == 1  # once, not per flush or per metric

    server.start()
    drive(recorder, 2, range(4, 6), start=False, end=True)
    assert recorder.flush()
    assert not recorder.log.backlog() and recorder.log.waiting() == 0
    assert len(_warnings(caplog, "reachable again")) == 1
    points = {k: v for k, v in metric_points(server.db_uri, "synthetic").items() if k[0] != "synthetic"}
    expected = {(naming.trial_run_name(n), key, e): 1 for n in range(3) for key in KEYS for e in range(1, 6)}
    assert points == expected
    runs = runs_by_name(server.db_uri, "synthetic")
    assert {runs[f"trial-00{n}"].info.status for n in range(3)} == {"FINISHED"}


def gated(config: dict, trial: TrialContext) -> None:
    """Trials 2+ wait for the test to stop the server; trials 4+ wait, after epoch 2, for it to
    be started again; so some epochs are reported before, during and after the outage."""
    gate = Path(trial.options["gate"])
    for epoch in range(1, trial.max_epochs + 1):
        if trial.number >= 2 and epoch == 1:
            _wait(gate / "stopped")
        if trial.number >= 4 and epoch == 3:
            _wait(gate / "restarted")
        lr = config["learning_rate"]
        trial.report(val_loss=lr + 1.0 / epoch, train_loss=1.0 / epoch, val_accuracy=0.5)


def _wait(path: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _until(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError("condition not reached")


@pytest.mark.usefixtures("ray_local")
def test_a_study_goes_on_through_an_outage_and_its_record_is_complete(server, tmp_path, caplog, monkeypatch):
    from orchestrator.api import launch
    from orchestrator.study.storage import load_study
    from orchestrator.tracking import flusher
    from tests.conftest import study_spec

    caplog.set_level(logging.WARNING, logger="orchestrator.tracking")
    monkeypatch.setattr(flusher, "DEFAULT_INTERVAL_S", 0.5)
    gate = tmp_path / "gate"
    gate.mkdir()
    spec = study_spec(tmp_path, name="outage", workload="tests.integration.tracking.test_outage:gated", sampler="random",
                      search_space="lr_only", scheduler="none", budget={"trials": 6, "max_epochs": 4},
                      workload_options={"gate": str(gate)}, tracking_uri=server.url)
    failures: list[BaseException] = []

    def operate() -> None:
        try:
            # Trials 0 and 1 are recorded, then the server goes away.
            _until(lambda: sum(1 for k in metric_points(server.db_uri, "outage") if k[1] == "val_loss") >= 8)
            server.stop()
            (gate / "stopped").touch()
            # Trials 2 and 3 run to the end and 4 and 5 report two epochs with the server down.
            _until(lambda: _kept(tmp_path) and _told(spec) >= 4)
            server.start()
            (gate / "restarted").touch()
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)
            (gate / "stopped").touch()
            (gate / "restarted").touch()

    operator = threading.Thread(target=operate)
    operator.start()
    summary = launch(spec, quiet=True)
    operator.join(180)
    assert not failures, failures
    assert summary.counts == {"COMPLETE": 6}

    study, _ = load_study(spec.name, spec.storage)
    points = metric_points(server.db_uri, "outage")
    for trial in study.get_trials(deepcopy=False):
        assert trial.state == TrialState.COMPLETE
        name = naming.trial_run_name(trial.number)
        for key in ("val_loss", "train_loss", "val_accuracy"):
            assert {step for (run, k, step) in points if run == name and k == key} == set(trial.intermediate_values)
    assert set(points.values()) == {1}, "a point was written twice"
    runs = runs_by_name(server.db_uri, "outage")
    assert len(runs) == 7 and runs["outage"].info.status == "FINISHED"
    assert len(_warnings(caplog, "is unreachable")) == 1
    assert len(_warnings(caplog, "reachable again")) == 1


def _kept(folder: Path) -> bool:
    """Records wait in the record log: sealed segments a flush could not write."""
    return any(folder.glob("ray/outage/mlflow-log-*.sealed.jsonl"))


def _told(spec) -> int:
    from orchestrator.study.storage import load_study

    study, _ = load_study(spec.name, spec.storage)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE)
