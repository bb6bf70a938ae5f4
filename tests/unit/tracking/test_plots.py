"""Study plots and the parent run's end on tiny studies: nothing crashes, skipped plots say why."""

from __future__ import annotations

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator.keys import StudyAttr, Tag
from orchestrator.spec import spec_from_mapping
from orchestrator.tracking.plots import make_plots
from orchestrator.tracking.setup import recorder_for

PNGS = {"optimization_history", "lr_vs_final_loss", "learning_curves", "parallel_coordinates", "param_importances"}


def _study(storage=None, name="tiny"):
    return optuna.create_study(study_name=name, storage=storage, direction="minimize")


def _add(study, state, lr, curve=(), diverged=False):
    study.enqueue_trial({"learning_rate": lr})
    trial = study.ask()
    assert trial.suggest_float("learning_rate", 1e-4, 1.0, log=True) == lr
    for step, value in enumerate(curve, start=1):
        trial.report(value, step)
    if diverged:
        trial.set_user_attr("diverged", True)
    reason = {TrialState.COMPLETE: "completed", TrialState.PRUNED: f"pruned at epoch {len(curve)}",
              TrialState.FAIL: "failed: ValueError: boom"}[state]
    if diverged:
        reason = f"diverged in epoch {len(curve)}: the loss became inf"
    trial.set_user_attr("stop_reason", reason)
    study.tell(trial, curve[-1] if state == TrialState.COMPLETE else None, state=state)
    return trial


def _drawn(files):
    return {f.stem for f in files}


def test_no_trial_at_all(tmp_path):
    files, notes = make_plots(_study(), "val_loss", tmp_path)
    assert not (_drawn(files) & PNGS)
    assert any("optimization_history: skipped" in n for n in notes)
    assert any("learning_curves: skipped" in n for n in notes)


def test_one_failed_and_one_pruned_trial_no_completed_one(tmp_path):
    study = _study()
    _add(study, TrialState.FAIL, 0.1)
    _add(study, TrialState.PRUNED, 0.01, curve=[1.0, 0.8])
    files, notes = make_plots(study, "val_loss", tmp_path)
    assert {"learning_curves", "lr_vs_final_loss"} <= _drawn(files)
    assert any(n.startswith("optimization_history: skipped, needs 1 completed trial") for n in notes)
    assert any(n.startswith("param_importances: skipped, needs 2 completed trials") for n in notes)
    assert all(f.stat().st_size > 0 for f in files)


def test_one_completed_trial_and_a_diverged_one(tmp_path):
    study = _study()
    _add(study, TrialState.COMPLETE, 0.1, curve=[1.0, 0.5, 0.3])
    _add(study, TrialState.PRUNED, 0.9, curve=[1.0, 99.0], diverged=True)
    files, notes = make_plots(study, "val_loss", tmp_path)
    assert {"optimization_history", "lr_vs_final_loss", "learning_curves", "parallel_coordinates"} <= _drawn(files)
    assert "param_importances" not in _drawn(files)
    assert "study_plots" in _drawn(files)  # plotly is installed in the test environment


def test_enough_trials_draw_every_plot(tmp_path):
    study = _study()
    for i, lr in enumerate([0.001, 0.01, 0.1, 0.5]):
        _add(study, TrialState.COMPLETE, lr, curve=[1.0, 0.5 + i / 10])
    _add(study, TrialState.PRUNED, 0.0003, curve=[2.0])
    files, notes = make_plots(study, "val_loss", tmp_path)
    assert PNGS <= _drawn(files), notes


def test_parent_run_of_a_study_with_no_completed_trial(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    spec = spec_from_mapping({"name": "tiny", "search_space": "lr_only", "storage": storage,
                              "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "results_dir": str(tmp_path / "ray")})
    study = _study(storage)
    study.set_user_attr("stepsize.spec", spec.to_dict())
    _add(study, TrialState.FAIL, 0.1)
    _add(study, TrialState.PRUNED, 0.01, curve=[1.0])
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster={"nodes": 1, "cpus": 2, "gpus": 0})
    assert recorder.finish(study, spec)
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    parent = client.get_run(study.user_attrs[StudyAttr.MLFLOW_PARENT_RUN])
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tiny"
    assert not [k for k in parent.data.params if k.startswith("best.")]
    assert "No trial completed" in parent.data.tags[Tag.NOTE]
    assert parent.data.params["ray.cpus"] == "2" and parent.data.params["sampler.name"] == "tpe"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)} | {
        a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "spec.yaml" in artifacts and "plots/skipped.txt" in artifacts and "best_config.yaml" not in artifacts
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_name = {r.info.run_name: r for r in children}
    assert by_name["trial-000"].info.status == "FAILED"
    assert by_name["trial-000"].data.tags[Tag.STATUS] == "failed: ValueError: boom"
    assert by_name["trial-001"].info.status == "FINISHED"  # pruned is not a failure; the tags say how it ended
    assert by_name["trial-001"].data.tags[Tag.STATE] == "PRUNED"
    assert by_name["trial-001"].data.tags[Tag.STATUS] == "pruned at epoch 1"
    assert not recorder.staging.exists()  # staged artifacts are removed once written
