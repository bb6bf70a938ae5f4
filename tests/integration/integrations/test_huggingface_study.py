"""A Hugging Face ``Trainer`` study end to end on real Ray, SQLite and MLflow: the example workload
(examples/huggingface.yaml) completes with pruned and finished trials, every reported epoch is a
point of the trial's MLflow curves and an Optuna intermediate value, and a trial whose worker dies
continues from its last Trainer checkpoint."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from mlflow import MlflowClient  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from orchestrator.api import launch  # noqa: E402
from orchestrator.keys import Tag  # noqa: E402
from orchestrator.study.storage import load_study  # noqa: E402
from tests.conftest import ROOT, study_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_local")
EXAMPLE = yaml.safe_load((ROOT / "examples" / "huggingface.yaml").read_text())
CURVES = ("val_loss", "val_accuracy", "train_loss", "lr")


def _curves(spec) -> dict[int, dict[str, list[int]]]:
    """trial number -> metric -> the steps of its MLflow history."""
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    out: dict[int, dict[str, list[int]]] = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        if run.data.tags.get(Tag.ROLE) == "trial":
            out[int(run.data.tags[Tag.TRIAL_NUMBER])] = {
                key: sorted(int(p.step) for p in client.get_metric_history(run.info.run_id, key)) for key in CURVES}
    return out


def test_the_example_study_prunes_and_records_every_epoch(tmp_path):
    fields = {key: EXAMPLE[key] for key in ("search_space", "objective", "scheduler", "seed")}
    spec = study_spec(tmp_path, name="hf", workload="examples.my_workloads.hf_sequences:train", **fields,
                      budget={"trials": 8, "max_epochs": 4}, workload_options={"train_size": 512, "val_size": 128})
    summary = launch(spec, quiet=True)
    study, _ = load_study("hf", spec.storage)
    trials = study.get_trials(deepcopy=False)
    assert summary.total == 8 and set(summary.counts) <= {"COMPLETE", "PRUNED"}, summary.counts
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and summary.counts.get("COMPLETE"), "ASHA at rf 2 over 8 trials prunes some and lets some finish"
    for t in pruned:
        epochs = sorted(t.intermediate_values)
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 4
        assert t.user_attrs["stop_reason"] == f"pruned at epoch {len(epochs)}"
    curves = _curves(spec)
    assert sorted(curves) == sorted(t.number for t in trials)
    for t in trials:
        epochs = sorted(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert epochs == [1, 2, 3, 4]
        for key in CURVES:
            assert curves[t.number][key] == epochs, (t.number, key)  # one point per reported epoch


def dies_after_two_epochs(config: dict, trial) -> None:
    """The example's Trainer; the first run of each trial kills its own worker once epoch 2 is
    reported, and every start writes the epoch it continues from to ``<marker_dir>``."""
    from transformers import TrainerCallback

    from examples.my_workloads.hf_sequences import build_trainer
    from orchestrator.integrations import huggingface as hf

    folder = Path(trial.options["marker_dir"])

    class KillOnce(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            with open(folder / f"trial-{trial.number}.starts", "a") as starts:
                starts.write(f"{trial.epoch} {state.global_step}\n")

        def on_epoch_begin(self, args, state, control, **kwargs):
            died = folder / f"trial-{trial.number}.died"
            if trial.epoch == 2 and not died.exists():
                died.touch()
                os.kill(os.getpid(), signal.SIGKILL)

    trainer = build_trainer(config, trial)
    trainer.add_callback(KillOnce())
    hf.fit(trainer, trial)


def test_a_killed_trial_continues_from_its_trainer_checkpoint(tmp_path):
    spec = study_spec(tmp_path, name="hf-dies", workload=f"{__name__}:dies_after_two_epochs", scheduler="none",
                      search_space={"learning_rate": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
                      workload_options={"marker_dir": str(tmp_path), "train_size": 256, "val_size": 64,
                                        "output_dir": str(tmp_path / "hf")},
                      budget={"trials": 1, "max_epochs": 4})
    launch(spec, quiet=True)
    study, _ = load_study("hf-dies", spec.storage)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
    assert (tmp_path / "trial-0.died").exists()
    # The retry continued after epoch 2 with the Trainer's state: 2 epochs of 256 / 8 (Trainer's default batch).
    starts = [line.split() for line in (tmp_path / "trial-0.starts").read_text().splitlines()]
    assert starts == [["0", "0"], ["2", "64"]]
    assert _curves(spec)[0]["val_loss"] == [1, 2, 3, 4]
    assert [p.name for p in (tmp_path / "hf" / "trial-0").iterdir()] == ["checkpoint-128"]  # save_total_limit 1
