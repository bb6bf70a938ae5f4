"""A Lightning workload (examples/my_workloads/lightning_digits.py) driven by a real study on real
Ray with SQLite storage: ASHA prunes through the callback, every reported epoch is an Optuna
intermediate value and an MLflow point, the best module is logged as an MLflow model, and a trial
whose worker failed continues from its last Lightning checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import TrialContext
from orchestrator.api import launch
from orchestrator.keys import Tag
from orchestrator.study.storage import load_study
from tests.conftest import study_spec

pytestmark = pytest.mark.usefixtures("ray_local")

WORKLOAD = "examples.my_workloads.lightning_digits:train"
SPACE = {
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    "learning_rate": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128]},
    "schedule": {"type": "categorical", "choices": ["constant", "cosine", "onecycle"]},
}
CURVES = ("train_loss", "val_loss", "val_accuracy", "lr")


def _trials(spec) -> dict:
    study, _ = load_study(spec.name, spec.storage)
    return {t.number: t for t in study.get_trials(deepcopy=False)}


def test_lightning_study_prunes_and_records_every_epoch(tmp_path):
    spec = study_spec(tmp_path, name="lightning", workload=WORKLOAD, search_space=SPACE, seed=1,
                      scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3},
                      budget={"trials": 8, "max_epochs": 5})
    summary = launch(spec, quiet=True)
    trials = _trials(spec)
    assert summary.total == 8 and len(trials) == 8
    assert {t.state for t in trials.values()} <= {TrialState.COMPLETE, TrialState.PRUNED}
    pruned = [t for t in trials.values() if t.state == TrialState.PRUNED and not t.user_attrs.get("diverged")]
    complete = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert pruned and complete, {t.number: t.user_attrs.get("stop_reason") for t in trials.values()}
    for t in pruned:
        epochs = sorted(t.intermediate_values)
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 5
        assert t.user_attrs["stop_reason"] == f"pruned at epoch {len(epochs)}"
    for t in complete:
        assert sorted(t.intermediate_values) == [1, 2, 3, 4, 5]
        assert set(t.user_attrs["final_metrics"]) >= set(CURVES)

    client = MlflowClient(tracking_uri=spec.tracking_uri)
    experiment = client.get_experiment_by_name("lightning")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    children = {int(r.data.tags[Tag.TRIAL_NUMBER]): r for r in runs if r.data.tags.get(Tag.ROLE) == "trial"}
    assert set(children) == set(trials)
    for number, trial in trials.items():
        if trial.user_attrs.get("diverged"):
            continue  # its last value is a penalty, not a reported epoch
        for key in CURVES:  # one point per reported epoch, for every curve the callback reported
            history = client.get_metric_history(children[number].info.run_id, key)
            assert sorted(p.step for p in history) == sorted(trial.intermediate_values), (number, key)
        history = client.get_metric_history(children[number].info.run_id, "val_loss")
        for point in history:
            assert point.value == pytest.approx(trial.intermediate_values[point.step])
    parent = next(r for r in runs if r.data.tags.get(Tag.ROLE) == "study")
    assert parent.data.tags.get(Tag.MODEL_URI), "the best trial's module (model.pt) was logged to MLflow"


def fails_once_after_epoch_two(config: dict, trial: TrialContext) -> None:
    """The example workload; each start writes the epoch it continues from, and the first start
    of each trial raises right after reporting (and checkpointing) epoch 2."""
    from examples.my_workloads.lightning_digits import train

    folder = Path(trial.options["marker_dir"])
    trial.resume_dir()  # sets trial.epoch for a resumed trial; the callback calls it again
    with open(folder / f"trial-{trial.number}.starts", "a") as starts:
        starts.write(f"{trial.epoch}\n")
    report = trial.report

    def report_then_fail(*args, **kwargs):
        report(*args, **kwargs)
        failed = folder / f"trial-{trial.number}.failed"
        if trial.epoch == 2 and not failed.exists():
            failed.touch()
            raise RuntimeError("worker lost after epoch 2")

    trial.report = report_then_fail  # type: ignore[method-assign]
    train(config, trial)


def test_a_retried_lightning_trial_continues_from_its_checkpoint(tmp_path):
    spec = study_spec(tmp_path, name="lightning-retry", scheduler="none",
                      workload="tests.integration.integrations.test_lightning_study:fails_once_after_epoch_two",
                      search_space={"learning_rate": {"type": "float", "low": 0.05, "high": 0.1, "log": True}},
                      workload_options={"marker_dir": str(tmp_path)}, budget={"trials": 1, "max_epochs": 4},
                      failures={"max_retries": 1, "retry_errors": True})
    launch(spec, quiet=True)
    trial = _trials(spec)[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
    assert (tmp_path / "trial-0.starts").read_text().split() == ["0", "2"]  # the retry skipped epochs 1-2
    assert trial.user_attrs["final_metrics"]["val_accuracy"] > 0.8
