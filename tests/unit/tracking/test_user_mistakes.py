"""The MLflow record when the user's setup goes wrong: a tracking server that is not there, an
interrupted study and its resume, ``lr_scaling`` in the best configuration, and pruned trials
that must not look failed. Real SQLite stores and a real refusing port; no mocks."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import threading
import time

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import api
from orchestrator.keys import StudyAttr, Tag
from orchestrator.spec import spec_from_mapping
from orchestrator.tracking.setup import recorder_for
from tests.conftest import ROOT
from tests.tracking_support import fake_trial, free_port, result

CLUSTER = {"nodes": 1, "cpus": 2, "gpus": 0}


def _spec(tmp_path, **fields):
    data = {"name": "oops", "search_space": "lr_only", "storage": f"sqlite:///{tmp_path}/optuna.db",
            "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "results_dir": str(tmp_path / "ray"), **fields}
    return spec_from_mapping(data)


def _study(spec):
    study = optuna.create_study(study_name=spec.name, storage=spec.storage)
    study.set_user_attr(StudyAttr.SPEC, spec.to_dict())
    return study


def _runs(spec, study):
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    parent = client.get_run(study.user_attrs[StudyAttr.MLFLOW_PARENT_RUN])
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return client, parent, {r.info.run_name: r for r in children}


def _trial(study, callback, lr: float, epochs: int):
    """An Optuna trial run through the callback for ``epochs`` epochs (left RUNNING)."""
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
    tune_trial = fake_trial(trial.number, lr)
    callback.on_trial_start(iteration=0, trials=[], trial=tune_trial)
    for epoch in range(1, epochs + 1):
        callback.on_trial_result(iteration=epoch, trials=[], trial=tune_trial, result=result(epoch))
        trial.report(1.2 / epoch, epoch)
    return trial, tune_trial


# -- an unreachable tracking server ---------------------------------------------------------------

SCRIPT = """
import logging, sys, time
import optuna
from orchestrator.spec import spec_from_mapping
from orchestrator.tracking.setup import start_recording
uri, folder = sys.argv[1], sys.argv[2]
spec = spec_from_mapping({"name": "away", "search_space": "lr_only", "storage": f"sqlite:///{folder}/optuna.db",
                          "tracking_uri": uri, "results_dir": f"{folder}/ray"})
study = optuna.create_study(study_name="away", storage=spec.storage)
study.set_user_attr("stepsize.spec", spec.to_dict())
began = time.monotonic()
recorder = start_recording(study, spec)
print(f"started after {time.monotonic() - began:.2f} s", flush=True)
logging.basicConfig(level=logging.ERROR)  # what importing mlflow.pytorch does
recorder.final_retries = 0
recorder.finish(study, spec)
"""


def test_an_unreachable_tracking_server_is_said_at_the_start_and_the_end(tmp_path):
    port = free_port()  # nothing listens there: connections are refused
    uri = f"http://stepsize:secret@127.0.0.1:{port}"
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SCRIPT, uri, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "tracking_uri" in line]
    assert len(lines) == 2, done.stderr
    start, end = lines
    assert start.startswith(f"tracking_uri http://stepsize:***@127.0.0.1:{port} does not answer")
    assert "records are kept in the record log" in start and "mlflow-log-" in start
    assert "`stepsize resume away`" in start and "`stepsize ui away`" in start
    assert "still unreachable at the end" in end and "records are kept in the record log" in end
    assert "secret" not in done.stderr
    assert float(done.stdout.split()[2]) < 10.0  # the probe is bounded, not MLflow's minutes of retries
    assert took < 120.0


# -- Ctrl-C: the parent and the trials left running end KILLED; resume reopens them ---------------

def test_an_interrupted_study_ends_killed_and_its_resume_continues_the_same_runs(tmp_path):
    spec = _spec(tmp_path)
    study = _study(spec)
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster=CLUSTER)
    done, _ = _trial(study, recorder.callback, 0.1, 2)
    done.set_user_attr("stop_reason", "completed")
    study.tell(done, 0.6)
    recorder.callback.on_trial_complete(iteration=0, trials=[], trial=fake_trial(done.number, 0.1))
    left, _ = _trial(study, recorder.callback, 0.01, 1)  # interrupted in its second epoch

    began = time.monotonic()
    recorder.finish(study, spec, status="KILLED")
    assert time.monotonic() - began < 15.0
    client, parent, children = _runs(spec, study)
    assert parent.info.status == "KILLED"
    assert children["trial-000"].info.status == "FINISHED"
    interrupted = children["trial-001"]
    assert interrupted.info.status == "KILLED"
    assert interrupted.data.tags[Tag.STATUS] == "interrupted at epoch 1; `stepsize resume oops` runs it again"
    assert study.get_trials()[1].state == TrialState.RUNNING  # Optuna keeps it for `stepsize resume`

    # The resume: a new recorder finds the same parent, runs trial 1 again and ends it.
    again = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster=CLUSTER)
    tune_trial = fake_trial(1, 0.01)
    again.callback.on_trial_start(iteration=0, trials=[], trial=tune_trial)
    again.flush()
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"
    assert client.get_run(interrupted.info.run_id).info.status == "RUNNING"
    for epoch in (2, 3):
        again.callback.on_trial_result(iteration=epoch, trials=[], trial=tune_trial, result=result(epoch))
        left.report(1.2 / epoch, epoch)
    left.set_user_attr("stop_reason", "completed")
    study.tell(left, 0.4)
    again.callback.on_trial_complete(iteration=0, trials=[], trial=tune_trial)
    assert again.finish(study, spec)
    client, parent, children = _runs(spec, study)
    assert parent.info.status == "FINISHED" and set(children) == {"trial-000", "trial-001"}
    resumed = children["trial-001"]
    assert resumed.info.run_id == interrupted.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags[Tag.STATUS] == "completed"
    assert [p.step for p in client.get_metric_history(resumed.info.run_id, "val_loss")] == [1, 2, 3]


def test_a_second_ctrl_c_while_the_end_is_recorded_still_leaves_the_parent_killed(tmp_path):
    spec = _spec(tmp_path)
    study = _study(spec)
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster=CLUSTER)
    for _ in range(3):
        _trial(study, recorder.callback, 0.05, 3)
    recorder.flush()
    timer = threading.Timer(0.05, signal.raise_signal, (signal.SIGINT,))  # the second Ctrl-C
    timer.start()
    try:
        recorder.finish(study, spec, status="KILLED")
        time.sleep(1.0)  # the signal lands after the end when the end was quicker
    except KeyboardInterrupt:
        pass
    timer.join()
    _, parent, children = _runs(spec, study)
    assert parent.info.status == "KILLED"


# -- pruned and diverged trials are not failures ----------------------------------------------------

def test_pruned_and_diverged_runs_end_finished_and_only_failures_failed(tmp_path):
    spec = _spec(tmp_path)
    study = _study(spec)
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster=CLUSTER)
    ends = [("completed", TrialState.COMPLETE, {}), ("pruned at epoch 1", TrialState.PRUNED, {}),
            ("diverged in epoch 2: loss inf", TrialState.PRUNED, {"diverged": True}),
            ("failed: ValueError: boom", TrialState.FAIL, {})]
    for reason, state, attrs in ends:
        trial, tune_trial = _trial(study, recorder.callback, 0.1, 2)
        trial.set_user_attr("stop_reason", reason)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
        recorder.callback.on_trial_complete(iteration=0, trials=[], trial=tune_trial)
    assert recorder.finish(study, spec)
    _, _, children = _runs(spec, study)
    got = {name: (run.info.status, run.data.tags[Tag.STATE], run.data.tags[Tag.STATUS])
           for name, run in children.items()}
    assert got == {
        "trial-000": ("FINISHED", "COMPLETE", "completed"),
        "trial-001": ("FINISHED", "PRUNED", "pruned at epoch 1"),
        "trial-002": ("FINISHED", "PRUNED", "diverged in epoch 2: loss inf"),
        "trial-003": ("FAILED", "FAIL", "failed: ValueError: boom"),
    }


# -- lr_scaling: the best configuration gives the rate the trial trained at ---------------------------

@pytest.mark.parametrize("batch", [64, 128])
def test_the_best_configuration_gives_the_effective_learning_rate(tmp_path, batch, capsys):
    space = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
             "batch_size": {"type": "categorical", "choices": [64, 128, 256]}}
    spec = _spec(tmp_path, search_space=space, lr_scaling={"rule": "sqrt", "reference_batch_size": 256})
    study = _study(spec)
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster=CLUSTER)
    base = 0.1
    study.enqueue_trial({"learning_rate": base, "batch_size": batch})
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    tune_trial = fake_trial(trial.number, base)
    tune_trial.config["batch_size"] = batch
    recorder.callback.on_trial_start(iteration=0, trials=[], trial=tune_trial)
    recorder.callback.on_trial_result(iteration=1, trials=[], trial=tune_trial, result=result(1))
    trial.report(0.5, 1)
    study.tell(trial, 0.5)
    recorder.callback.on_trial_complete(iteration=0, trials=[], trial=tune_trial)
    unstarted = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True),
                           "batch_size": optuna.distributions.CategoricalDistribution([64, 128, 256])})
    study.tell(unstarted, 0.9)  # a trial the callback never saw: its run comes from trial_config
    assert recorder.finish(study, spec)

    effective = base * math.sqrt(batch / 256)
    best = api.best(spec.name, spec.storage)
    assert best["config"]["learning_rate"] == pytest.approx(effective)
    assert best["config"]["base_learning_rate"] == base
    assert best["config"]["lr_scaling"] == "sqrt: base 0.1 at batch 256"
    assert best["lr_scaling"] == {"rule": "sqrt", "reference_batch_size": 256, "base_learning_rate": base,
                                  "effective_learning_rate": best["config"]["learning_rate"]}
    from orchestrator.cli import main

    assert main(["best", spec.name, "--storage", spec.storage, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["learning_rate"] == pytest.approx(effective)

    client, parent, children = _runs(spec, study)
    assert float(parent.data.params["best.learning_rate"]) == pytest.approx(effective)
    path = client.download_artifacts(parent.info.run_id, "best_config.yaml", str(tmp_path))
    text = open(path).read()
    assert "# learning_rate is the rate the trial trained at" in text
    assert yaml.safe_load(text)["learning_rate"] == pytest.approx(effective)
    for run in children.values():
        params = run.data.params
        assert params["effective_learning_rate"] == params["learning_rate"]
        assert float(params["learning_rate"]) == pytest.approx(
            float(params["base_learning_rate"]) * math.sqrt(int(params["batch_size"]) / 256))
    assert float(children["trial-000"].data.params["learning_rate"]) == pytest.approx(effective)


def test_a_run_without_lr_scaling_gets_its_effective_learning_rate_too(tmp_path):
    spec = _spec(tmp_path)
    study = _study(spec)
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster=CLUSTER)
    trial, tune_trial = _trial(study, recorder.callback, 0.03, 1)
    study.tell(trial, 0.5)
    recorder.callback.on_trial_complete(iteration=0, trials=[], trial=tune_trial)
    assert recorder.finish(study, spec)
    _, _, children = _runs(spec, study)
    params = children["trial-000"].data.params
    assert params["effective_learning_rate"] == params["learning_rate"] == "0.03"
    assert "lr_scaling" not in params


def test_warnings_reach_stderr_after_the_root_logger_is_silenced():
    script = textwrap.dedent("""
        import logging
        from orchestrator.tracking.recorder import _warm_up, logger
        _warm_up()  # imports mlflow.pytorch, which may call logging.basicConfig(level=ERROR)
        logging.basicConfig(level=logging.ERROR)
        logger.warning("still heard")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "still heard" in done.stderr, done.stderr
