"""The MLflow record is idempotent: flushing again, sending the same records again, or a new
recorder against the same store never duplicates a run or a (run, metric, step) point. Driven
directly with Tune-like trials and results (no Ray), on a SQLite tracking store."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from orchestrator.keys import Config, Tag
from orchestrator.tracking import naming
from orchestrator.tracking.record_log import read_segment
from orchestrator.tracking.records import metrics
from tests.tracking_support import drive, fake_trial, make_recorder, metric_points, runs_by_name

EPOCHS = range(1, 6)
KEYS = {"train_loss", "val_loss", "val_accuracy", "lr", "epoch_time_s"}


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def _expected(trials, epochs=EPOCHS):
    return {(naming.trial_run_name(n), key, e): 1 for n in trials for key in KEYS for e in epochs}


def _trial_points(uri):
    return {k: v for k, v in metric_points(uri, "synthetic").items() if k[0] != "synthetic"}


def test_flushing_twice_and_resending_records_writes_each_point_once(uri, tmp_path):
    recorder = make_recorder(uri, tmp_path)
    for number in range(3):
        drive(recorder, number, EPOCHS, end=True)
    sent = read_segment(recorder.log.path)  # keep a copy to send again (the open segment holds them all)
    assert len(sent) > 3 * len(EPOCHS)
    assert recorder.flush() and recorder.flush()
    recorder.add(*sent)  # the same records again (as a replayed record log would)
    assert recorder.flush()
    assert _trial_points(uri) == _expected(range(3))
    runs = runs_by_name(uri, "synthetic")
    assert set(runs) == {"synthetic", "trial-000", "trial-001", "trial-002"}
    parent = runs["synthetic"].info.run_id
    for number in range(3):
        run = runs[naming.trial_run_name(number)]
        assert run.data.tags[Tag.PARENT] == parent
        assert run.data.tags[Tag.TRIAL_NUMBER] == str(number)
        assert run.data.tags[Tag.STATUS] == "completed" and run.info.status == "FINISHED"
        assert run.data.params["learning_rate"] == "0.01" and "_trial_number" not in run.data.params
        assert run.data.tags[Tag.NODE_IP] == "127.0.0.1"


def test_a_new_recorder_finds_the_parent_and_the_trial_runs_and_skips_logged_steps(uri, tmp_path):
    first = make_recorder(uri, tmp_path)
    drive(first, 0, range(1, 4))
    drive(first, 1, range(1, 3))
    assert first.flush()
    parent = first.parent_run_id
    assert first.writer.stats["runs_created"] == 3

    # A second driver process: same parent id (from the Optuna study), same trials reported again
    # from the start (a restored experiment replays them), plus their later epochs.
    second = make_recorder(uri, tmp_path, parent=parent)
    drive(second, 0, EPOCHS, end=True)
    drive(second, 1, EPOCHS, end=True)
    drive(second, 2, EPOCHS, end=True)
    assert second.flush()
    assert second.parent_run_id == parent
    assert second.writer.stats["runs_created"] == 1  # only trial 2 is new
    assert _trial_points(uri) == _expected(range(3))

    # Without the parent id: found by the study key tag in the experiment.
    third = make_recorder(uri, tmp_path)
    drive(third, 1, EPOCHS, end=True)
    assert third.flush()
    assert third.parent_run_id == parent and third.writer.stats["runs_created"] == 0
    assert _trial_points(uri) == _expected(range(3))
    assert len(runs_by_name(uri, "synthetic")) == 4


def test_points_go_in_batches_not_one_call_per_metric(uri, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("log_metric called: metrics must go through log_batch")

    monkeypatch.setattr(MlflowClient, "log_metric", refuse)
    recorder = make_recorder(uri, tmp_path)
    for number in range(4):
        drive(recorder, number, range(1, 21), end=True)
    assert recorder.flush()
    stats = recorder.writer.stats
    assert stats["metric_points"] == 4 * 20 * len(KEYS)
    assert stats["batches"] <= 4 + 1  # one per run (and the parent)


def test_a_refused_param_does_not_block_the_metrics(uri, tmp_path):
    recorder = make_recorder(uri, tmp_path)
    drive(recorder, 0, range(1, 3))
    assert recorder.flush()
    ref = naming.trial_ref(0)
    from orchestrator.tracking.records import params

    recorder.add(params(ref, {"learning_rate": "0.5"}), metrics(ref, 3, {"val_loss": 0.1}))  # a param may not change
    assert recorder.flush()
    points = _trial_points(uri)
    assert points[("trial-000", "val_loss", 3)] == 1
    assert runs_by_name(uri, "synthetic")["trial-000"].data.params["learning_rate"] == "0.01"


def test_callback_survives_pickling_as_an_inert_copy(uri, tmp_path):
    import pickle

    recorder = make_recorder(uri, tmp_path)
    copy = pickle.loads(pickle.dumps(recorder.callback))
    drive_copy = type("R", (), {"callback": copy})
    drive(drive_copy, 0, range(1, 3), end=True)  # records nothing, raises nothing
    assert recorder.log.results_waiting == 0 and recorder.log.waiting() == 0


def test_a_trial_the_rung_model_proposed_is_tagged_with_its_rung(uri, tmp_path):
    recorder = make_recorder(uri, tmp_path)
    marked = fake_trial(1)
    marked.config[Config.RUNG_MODEL_EPOCH] = 9
    for trial in (fake_trial(0), marked):
        recorder.callback.on_trial_start(iteration=0, trials=[], trial=trial)
        recorder.callback.on_trial_complete(iteration=0, trials=[], trial=trial)
    assert recorder.flush()
    runs = runs_by_name(uri, "synthetic")
    assert runs["trial-001"].data.tags[Tag.RUNG_MODEL_EPOCH] == "9"
    assert Tag.RUNG_MODEL_EPOCH not in runs["trial-000"].data.tags
    assert "_rung_model_epoch" not in runs["trial-001"].data.params
