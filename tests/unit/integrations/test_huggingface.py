"""The Hugging Face integration: stepsize's configuration keys as ``TrainingArguments``, and the
callback driven by a real tiny ``Trainer`` (reports, pruning, divergence, resume)."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch  # noqa: E402

from examples.my_workloads.hf_sequences import build_trainer  # noqa: E402
from orchestrator.errors import HuggingFaceMissing, TrialConfigError, TrialDiverged  # noqa: E402
from orchestrator.integrations import huggingface as hf  # noqa: E402
from orchestrator.trial.context import TrialContext  # noqa: E402

SMALL = {"train_size": 128, "val_size": 64, "hidden": 16}


def _trial(sink=None, epochs: int = 3, **fields) -> TrialContext:
    return TrialContext(number=4, max_epochs=epochs, seed=7, options=SMALL, _sink=sink or (lambda *a: None), **fields)


def _args(config: dict, epochs: int = 4, **overrides):
    return hf.training_arguments(config, _trial(epochs=epochs), output_dir="unused", **overrides)


# -- the mapping ----------------------------------------------------------------------------------


def test_trial_defaults_and_searched_values():
    trial = _trial(epochs=5)
    args = hf.training_arguments({"learning_rate": 0.003, "batch_size": 16, "weight_decay": 0.01}, trial)
    assert (args.learning_rate, args.per_device_train_batch_size, args.weight_decay) == (0.003, 16, 0.01)
    assert args.num_train_epochs == 5 and args.seed == 7 and args.use_cpu
    assert args.eval_strategy == "epoch" and args.disable_tqdm and args.dataloader_num_workers == 0
    assert args.report_to in ([], "none", ["none"]) and args.logging_nan_inf_filter is False
    assert Path(args.output_dir).name.startswith("stepsize-hf-trial4-")
    shutil.rmtree(args.output_dir)
    assert _args({}, save_strategy="epoch", seed=1).seed == 1  # overrides win


@pytest.mark.parametrize("config, optim, extra", [
    ({"optimizer": "sgd"}, "sgd", {"optim_args": "momentum=0.9"}),
    ({"optimizer": "SGD", "momentum": 0.5, "nesterov": True}, "sgd", {"optim_args": "momentum=0.5,nesterov=true"}),
    ({"optimizer": "adamw", "beta1": 0.8, "eps": 1e-6}, "adamw_torch", {"adam_beta1": 0.8, "adam_epsilon": 1e-6}),
    ({"optimizer": "adam"}, "adamw_torch", {"adam_beta2": 0.999}),
    ({"optimizer": "rmsprop", "alpha": 0.9}, "rmsprop", {"optim_args": "alpha=0.9,eps=1e-08,momentum=0.0"}),
    ({"optimizer": "adagrad"}, "adagrad", {"optim_args": "lr_decay=0.0,eps=1e-10"}),
])
def test_optimizer_names_map_to_trainer_optim(config, optim, extra):
    args = _args(config)
    assert args.optim == optim
    assert {key: getattr(args, key) for key in extra} == extra


def test_the_optimizer_trainer_builds_follows_the_configuration():
    trainer = build_trainer({"optimizer": "sgd", "learning_rate": 0.02, "momentum": 0.7}, _trial())
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.02 and optimizer.param_groups[0]["momentum"] == 0.7
    shutil.rmtree(trainer.args.output_dir)


@pytest.mark.parametrize("config, message", [
    ({"optimizer": "lion"}, "expected one of sgd, adam, adamw"),
    ({"optimizer": "adam", "weight_decay": 0.01}, "use optimizer 'adamw'"),
    ({"optimizer": "adamw", "amsgrad": True}, "amsgrad"),
    ({"head_lr_multiplier": 2.0}, "build_optimizer"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"schedule": "onecycle"}, "no equivalent"),
    ({"schedule": "wobbly"}, "expected one of constant, linear, cosine"),
    ({"schedule": "warmup_cosine", "warmup_epochs": 4}, "warmup_epochs"),
    ({"schedule": "plateau", "warmup_epochs": 1}, "plateau"),
])
def test_values_trainer_cannot_express_name_the_key(config, message):
    with pytest.raises(TrialConfigError, match=message):
        _args(config)


@pytest.mark.parametrize("config, scheduler, warmup, kwargs", [
    ({"schedule": "constant"}, "constant", 0.0, {}),
    ({"schedule": "constant", "warmup_epochs": 1}, "constant_with_warmup", 0.25, {}),
    ({"schedule": "warmup_cosine"}, "cosine", 0.25, {}),
    ({"schedule": "cosine", "warmup_epochs": 2, "min_lr_ratio": 0.1}, "cosine_with_min_lr", 0.5, {"min_lr_rate": 0.1}),
    ({"schedule": "plateau", "plateau_patience": 1}, "reduce_lr_on_plateau", 0.0, {"factor": 0.5, "patience": 1}),
    ({"schedule": "linear"}, "linear", 0.0, {}),
])
def test_schedules_and_warm_up(config, scheduler, warmup, kwargs):
    args = _args(config, epochs=4)
    assert args.lr_scheduler_type == scheduler and (args.lr_scheduler_kwargs or {}) == kwargs
    assert getattr(args, "warmup_ratio", args.warmup_steps) == warmup


def test_overrides_skip_the_mapping_they_replace():
    args = _args({"schedule": "onecycle", "optimizer": "adam", "weight_decay": 0.1, "head_lr_multiplier": 2.0},
                 lr_scheduler_type="linear", optim="adamw_torch")
    assert (args.lr_scheduler_type, args.optim, args.weight_decay) == ("linear", "adamw_torch", 0.1)


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "orchestrator.integrations.huggingface")
    with pytest.raises(HuggingFaceMissing, match=r"pip install 'stepsize\[hf\]'") as missing:
        importlib.import_module("orchestrator.integrations.huggingface")
    assert isinstance(missing.value, ImportError) and missing.value.exit_code == 2


# -- the callback with a real Trainer ------------------------------------------------------------


class Sink:
    """Collects reports; keeps a copy of each checkpoint folder (as Ray Tune does); raises
    SystemExit at ``stop_at`` (as a scheduler's stop does)."""

    def __init__(self, root: Path, stop_at: int | None = None):
        self.root, self.stop_at, self.reports, self.folders = root, stop_at, [], []

    def __call__(self, metrics: dict, folder: str | None = None) -> None:
        self.reports.append(metrics)
        if folder is not None:
            kept = self.root / f"epoch-{metrics['epoch']}"
            shutil.copytree(folder, kept)
            self.folders.append(kept)
        if metrics["epoch"] == self.stop_at:
            raise SystemExit("stopped by the scheduler")


CONFIG = {"learning_rate": 3e-3, "batch_size": 32, "optimizer": "adamw", "schedule": "warmup_cosine"}


def test_each_evaluation_is_one_epoch_under_stepsize_names(tmp_path):
    sink = Sink(tmp_path)
    trial = _trial(sink)
    trainer = build_trainer(CONFIG, trial)
    output_dir = trainer.args.output_dir
    hf.fit(trainer, trial)
    assert [r["epoch"] for r in sink.reports] == [1, 2, 3]
    for report in sink.reports:
        assert set(report) == {"epoch", "val_loss", "val_accuracy", "train_loss", "lr"}
    assert sink.reports[0]["lr"] == pytest.approx(3e-3)  # warm-up of one epoch, then cosine down
    assert sink.reports[2]["lr"] < sink.reports[1]["lr"] < sink.reports[0]["lr"]
    assert sink.folders == [] and not Path(output_dir).exists()  # no checkpoint outside a study; scratch removed
    trainer.evaluate()
    assert len(sink.reports) == 3  # an evaluation after training is not an epoch


def test_a_stopped_trial_ends_train_with_the_checkpoint_reported(tmp_path):
    sink = Sink(tmp_path, stop_at=2)
    trial = _trial(sink, checkpointing=True)
    with pytest.raises(SystemExit):
        hf.fit(build_trainer(CONFIG, trial), trial)
    assert [r["epoch"] for r in sink.reports] == [1, 2]
    files = {p.name for p in sink.folders[-1].iterdir()}
    assert {"trainer_state.json", "optimizer.pt", "scheduler.pt", "stepsize.json", hf.GUARD_FILE} <= files


def test_a_resumed_trial_continues_after_its_checkpoint_as_if_never_stopped(tmp_path):
    whole = Sink(tmp_path / "whole")
    trial = _trial(whole, checkpointing=True)
    hf.fit(build_trainer(CONFIG, trial), trial)
    stopped = Sink(tmp_path / "stopped", stop_at=2)
    trial = _trial(stopped, checkpointing=True)
    with pytest.raises(SystemExit):
        hf.fit(build_trainer(CONFIG, trial), trial)
    resumed = Sink(tmp_path / "resumed")
    trial = _trial(resumed, checkpointing=True, restore_from=str(stopped.folders[-1]))
    hf.fit(build_trainer(CONFIG, trial), trial)
    assert [r["epoch"] for r in resumed.reports] == [3]
    assert trial.guard.reference == pytest.approx(whole.reports[0]["train_loss"])  # the guard came back too
    for key in ("val_loss", "train_loss", "lr"):
        assert resumed.reports[0][key] == pytest.approx(whole.reports[2][key], rel=1e-4)


def test_an_evaluation_trainer_does_not_save_is_still_reported(tmp_path):
    sink = Sink(tmp_path)
    trial = _trial(sink, checkpointing=True)
    trainer = build_trainer(CONFIG, trial)
    # Saves only on a "new best" of a loss that counts as better when higher: after epoch 1, never.
    trainer.args.save_strategy, trainer.args.metric_for_best_model, trainer.args.greater_is_better = "best", "loss", True
    hf.fit(trainer, trial)
    assert [r["epoch"] for r in sink.reports] == [1, 2, 3]
    assert [p.name for p in sink.folders] == ["epoch-1"]


def test_a_diverging_loss_stops_training_inside_the_epoch(tmp_path):
    sink = Sink(tmp_path)
    trial = _trial(sink, epochs=2)
    trainer = build_trainer({"learning_rate": 1e6, "optimizer": "sgd", "batch_size": 8}, trial)
    with pytest.raises(TrialDiverged) as diverged:
        hf.fit(trainer, trial)
    assert diverged.value.epoch == 1 and sink.reports == []
    assert trainer.state.global_step < 16  # stopped before the epoch's 16 steps were done


def test_prefix_and_rename_choose_the_reported_names():
    callback = hf.StepsizeCallback(_trial(), prefix="dev_", rename={"eval_accuracy": "acc"})
    metrics = {"eval_loss": 0.5, "eval_accuracy": 0.9, "eval_runtime": 1.0, "epoch": 1.0, "eval_note": "x"}
    assert callback.metrics(metrics) == {"dev_loss": 0.5, "acc": 0.9}
