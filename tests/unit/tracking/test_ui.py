"""``stepsize ui`` without a browser: it refuses to listen beyond this machine, and it first
writes what a study left in its record log when the tracking store was unreachable at its end."""

from __future__ import annotations

import logging
import shutil

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator.cli import main
from orchestrator.keys import StudyAttr, Tag
from orchestrator.spec import spec_from_mapping
from orchestrator.tracking.setup import recorder_for, replay_record_log
from orchestrator.tracking.ui import find_record, is_loopback
from tests.tracking_support import fake_trial, result


def test_ui_refuses_a_public_address(capsys):
    assert main(["ui", "anything", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "no authentication" in err and "ssh -L 5000:127.0.0.1:5000" in err
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("192.168.1.5")


def test_ui_of_an_unknown_study_is_a_usage_error(tmp_path, capsys):
    assert main(["ui", "nope", "--storage", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "nope" in capsys.readouterr().err


def test_records_left_in_the_record_log_are_written_before_the_ui_opens(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="orchestrator.tracking")
    store = tmp_path / "tracking"
    store.mkdir()
    storage = f"sqlite:///{tmp_path}/optuna.db"
    spec = spec_from_mapping({"name": "later", "search_space": "lr_only", "storage": storage,
                              "tracking_uri": f"sqlite:///{store}/mlflow.db", "results_dir": str(tmp_path / "ray")})
    shutil.rmtree(store)
    store.write_text("a file where the store's folder should be")  # unreachable for the whole study
    study = optuna.create_study(study_name="later", storage=storage)
    study.set_user_attr("stepsize.spec", spec.to_dict())
    recorder = recorder_for(study, spec, interval_s=3600)
    recorder.final_retries = 0
    recorder.begin(study, spec, cluster={"nodes": 1, "cpus": 2, "gpus": 0})
    trial = study.ask()
    lr = trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
    callback = recorder.callback
    tune_trial = fake_trial(trial.number, lr)
    tune_trial.config["learning_rate"] = lr
    callback.on_trial_start(iteration=0, trials=[], trial=tune_trial)
    for epoch in (1, 2):
        callback.on_trial_result(iteration=epoch, trials=[], trial=tune_trial, result=result(epoch))
        trial.report(1.2 / epoch, epoch)
    trial.set_user_attr("stop_reason", "completed")
    study.tell(trial, 0.6, state=TrialState.COMPLETE)
    callback.on_trial_complete(iteration=0, trials=[], trial=tune_trial)

    assert recorder.finish(study, spec) is False  # nothing could be written; the study went on
    assert recorder.log.backlog() and recorder.log.waiting() > 0  # kept on disk
    assert [r for r in caplog.records if "is unreachable" in r.getMessage()]
    assert [r for r in caplog.records if "still unreachable at the end" in r.getMessage()]
    assert StudyAttr.MLFLOW_PARENT_RUN not in study.user_attrs

    store.unlink()
    store.mkdir()  # the store is back
    record = find_record("later", storage)
    assert not recorder.log.backlog() and recorder.log.waiting() == 0
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.params["best.learning_rate"] == str(lr)
    child = client.search_runs([record.experiment_id], f"tags.`mlflow.parentRunId` = '{record.parent_run_id}'")[0]
    assert child.info.run_name == "trial-000" and child.data.tags[Tag.STATUS] == "completed"
    assert [p.step for p in client.get_metric_history(child.info.run_id, "val_loss")] == [1, 2]
    assert "best_config.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert replay_record_log(study, spec) is None  # nothing left
    assert record.url("http://127.0.0.1:5000") == (
        f"http://127.0.0.1:5000/#/experiments/{record.experiment_id}/runs/{record.parent_run_id}")
