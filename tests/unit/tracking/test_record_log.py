"""The record log: one on-disk mechanism for the write-ahead journal and the outage spool."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna

from orchestrator.keys import StudyAttr
from orchestrator.tracking import records
from orchestrator.tracking.record_log import RecordLog, log_path, read_segment


def _metric(step: int) -> dict:
    return records.metrics("trial:0", step, {"val_loss": 1.0 / step})


def test_records_are_on_disk_as_they_arrive_and_gone_once_written(tmp_path):
    log = RecordLog(log_path(tmp_path, "k" * 32))
    assert log.add(_metric(1), records.tags("trial:0", {"a": "b"})) == 1
    assert [json.loads(line)["op"] for line in log.path.read_text().splitlines()] == ["metrics", "tags"]
    batch = log.take()
    assert [r["op"] for r in batch.records] == ["metrics", "tags"] and not batch.backlog
    assert not log.path.exists() and len(batch.segments) == 1 and batch.segments[0].is_file()
    assert log.waiting() == 2
    log.written(batch)
    assert not batch.segments[0].exists() and log.waiting() == 0 and log.results_waiting == 0


def test_a_killed_drivers_records_are_taken_first_by_the_next_driver(tmp_path):
    path = log_path(tmp_path, "k" * 32)
    killed = RecordLog(path)
    killed.add(_metric(1), _metric(2))  # never taken: the driver died
    with path.open("a") as handle:
        handle.write('{"op": "metr')  # torn by the kill mid-write
    resumed = RecordLog(path)  # adopts the open segment
    assert len(resumed.backlog()) == 1
    resumed.add(_metric(3))
    batch = resumed.take()
    assert [r["step"] for r in batch.records] == [1, 2, 3] and batch.backlog


def test_records_wait_through_an_outage_and_keep_their_order(tmp_path):
    log = RecordLog(log_path(tmp_path, "k" * 32))
    log.add(_metric(1))
    failed = log.take()
    log.kept(failed)  # MLflow unreachable
    log.add(_metric(2))
    only_new = log.take(read_backlog=False)  # the store is still down: no need to read the backlog
    assert [r["step"] for r in only_new.records] == [2]
    log.kept(only_new)
    log.add(_metric(3))
    retry = log.take()
    assert [r["step"] for r in retry.records] == [1, 2, 3]
    log.written(retry)
    assert not log.backlog() and log.take().records == []


def test_a_log_that_does_not_adopt_leaves_the_open_segment_alone(tmp_path):
    path = log_path(tmp_path, "k" * 32)
    RecordLog(path).add(_metric(1))
    RecordLog(path, adopt_open=False)
    assert path.is_file() and read_segment(path)[0]["step"] == 1


def test_replay_leaves_the_log_to_a_driver_that_is_alive(tmp_path):
    from orchestrator.spec import spec_from_mapping
    from orchestrator.tracking.setup import replay_record_log

    path = log_path(tmp_path, "k" * 32)
    RecordLog(path).add(_metric(1))
    study = optuna.create_study(study_name="s")
    study.set_user_attr(StudyAttr.MLFLOW_LOG, str(path))
    spec = spec_from_mapping({"name": "s", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                              "results_dir": str(tmp_path)})
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        study.set_user_attr(StudyAttr.DRIVER, {"host": socket.gethostname(), "pid": driver.pid})
        assert replay_record_log(study, spec) is None
        assert path.is_file(), "the live driver's open segment must stay where it writes it"
    finally:
        driver.kill()
        driver.wait()
