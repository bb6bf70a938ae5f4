"""A real study on Ray leaves its MLflow record: one parent run, one nested child run per Optuna
trial with one point per epoch it ran, statuses matching Optuna, and the best configuration."""

from __future__ import annotations

import math

import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import TrialContext, api
from orchestrator.api import launch
from orchestrator.keys import StudyAttr, Tag
from orchestrator.study.storage import load_study
from tests.conftest import study_spec

pytestmark = pytest.mark.usefixtures("ray_local")


def mixed(config: dict, trial: TrialContext) -> None:
    """Trial 1 raises in epoch 2; learning rates above 0.6 diverge in epoch 2; the rest fall like
    tests.workloads:quadratic (lowest at learning_rate 0.1)."""
    lr = config["learning_rate"]
    for epoch in range(1, trial.max_epochs + 1):
        if trial.number == 1 and epoch == 2:
            raise ValueError("boom in trial 1")
        if lr > 0.6 and epoch == 2:
            trial.check_loss(float("inf"))
        gap = (math.log10(lr) + 1) ** 2
        trial.report(val_loss=gap + 1.0 / epoch, train_loss=gap + 1.1 / epoch, val_accuracy=1 / (1 + gap), lr=lr)


def test_study_leaves_one_parent_and_a_child_run_per_trial(tmp_path):
    spec = study_spec(
        tmp_path, name="tracked", workload="tests.integration.tracking.test_study_record:mixed", sampler="random", seed=5,
        search_space={"learning_rate": {"type": "float", "low": 0.01, "high": 1.0}},
        scheduler={"name": "asha", "grace_period": 2, "reduction_factor": 2},
        budget={"trials": 8, "max_epochs": 4}, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )
    launch(spec, quiet=True)
    study, _ = load_study(spec.name, spec.storage)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id], max_results=100)

    parents = [r for r in runs if r.data.tags.get(Tag.ROLE) == "study"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "tracked" and parent.info.status == "FINISHED"
    assert study.user_attrs[StudyAttr.MLFLOW_PARENT_RUN] == parent.info.run_id
    assert parent.data.params["sampler.name"] == "random" and parent.data.params["scheduler.name"] == "asha"
    assert parent.data.params["budget.trials"] == "8" and int(parent.data.params["ray.cpus"]) >= 1

    children = {int(r.data.tags[Tag.TRIAL_NUMBER]): r for r in runs if r is not parent
                and r.data.tags.get(Tag.ROLE) == "trial"}
    assert len(runs) == 1 + len(trials) and set(children) == set(trials)
    states = set()
    for number, trial in trials.items():
        run = children[number]
        states.add((trial.state, bool(trial.user_attrs.get("diverged"))))
        assert run.info.run_name == f"trial-{number:03d}"
        assert run.data.tags[Tag.PARENT] == parent.info.run_id
        assert run.data.tags[Tag.STATUS] == trial.user_attrs["stop_reason"]
        assert run.data.tags[Tag.STATE] == trial.state.name
        assert run.info.status == {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED",
                                   TrialState.FAIL: "FAILED"}[trial.state]  # pruned is no failure
        assert run.data.params["learning_rate"] == str(trial.params["learning_rate"])
        assert run.data.params["effective_learning_rate"] == run.data.params["learning_rate"]
        history = client.get_metric_history(run.info.run_id, "val_loss")
        steps = sorted(trial.intermediate_values)
        if trial.user_attrs.get("diverged"):
            steps = steps[:-1]  # the diverged epoch's value is a penalty for the sampler, not a loss
        assert sorted(p.step for p in history) == steps, f"trial {number}"
        for point in history:
            assert point.value == pytest.approx(trial.intermediate_values[point.step])
        if steps:
            assert run.data.tags[Tag.NODE_IP]
            assert {"train_loss", "val_accuracy", "lr"} <= set(run.data.metrics)
    assert (TrialState.FAIL, False) in states and (TrialState.COMPLETE, False) in states
    assert (TrialState.PRUNED, True) in states, "seed 5 draws a learning rate above 0.6"
    assert children[1].data.tags[Tag.STATUS].startswith("failed:")

    best = api.best(spec.name, spec.storage)
    best_params = {k[len("best."):]: v for k, v in parent.data.params.items() if k.startswith("best.")}
    assert best_params == {k: str(v) for k, v in best["config"].items()}
    assert parent.data.metrics["best.val_loss"] == pytest.approx(best["value"])
    assert parent.data.tags[Tag.BEST_TRIAL] == str(best["trial"])
    assert parent.data.tags[Tag.BEST_RUN] == children[best["trial"]].info.run_id
    assert children[best["trial"]].data.tags[Tag.BEST] == "true"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"spec.yaml", "best_config.yaml"} <= artifacts
    assert {"plots/learning_curves.png", "plots/lr_vs_final_loss.png", "plots/optimization_history.png"} <= plots
    best_file = client.download_artifacts(parent.info.run_id, "best_config.yaml", str(tmp_path))
    assert yaml.safe_load(open(best_file)) == best["config"]
