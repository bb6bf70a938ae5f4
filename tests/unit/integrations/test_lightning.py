"""The Lightning integration on a real Trainer: per-epoch reports under stepsize's names, a stop
from the scheduler ending the fit as Ray Tune expects, divergence per batch, checkpoints that a
resumed fit continues from exactly, and the optimizer/schedule and Trainer helpers."""

from __future__ import annotations

import importlib
import shutil
import sys
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerStatus
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from orchestrator import TrialContext
from orchestrator.errors import LightningMissing, TrialConfigError, TrialDiverged
from orchestrator.integrations.lightning import (
    CHECKPOINT_FILE,
    StepsizeCallback,
    configure_optimizers,
    trainer_kwargs,
)
from orchestrator.keys import Result
from orchestrator.trial.checkpoints import checkpoint_meta, load_model
from orchestrator.trial.runner import TrialRuntime, run_trial

NAMES = {"train/loss": "train_loss", "val/loss": "val_loss"}
CONFIG = {"learning_rate": 0.1, "momentum": 0.9, "schedule": "warmup_cosine", "warmup_epochs": 1}


def _data(n: int = 96, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


class Tiny(pl.LightningModule):
    """6 -> 16 -> 2 with dropout (so a resumed fit must get the random state back too)."""

    def __init__(self, config: dict, nan_at_step: int | None = None, val_check: bool = True) -> None:
        super().__init__()
        self.config = config
        self.nan_at_step = nan_at_step
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
        if not val_check:
            self.validation_step = None  # type: ignore[assignment]

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        if self.nan_at_step is not None and self.global_step >= self.nan_at_step:
            loss = loss * float("nan")
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return configure_optimizers(self, self.config, monitor="val/loss")


def fit_tiny(trial: TrialContext, config: dict = CONFIG, names=NAMES, module_kw: dict | None = None, **trainer_kw):
    callback = StepsizeCallback(trial, names)
    trainer = pl.Trainer(**trainer_kwargs(trial, callbacks=[callback], **trainer_kw))
    model = Tiny(dict(config), **(module_kw or {}))
    loaders = DataLoader(_data(), batch_size=16, shuffle=True), DataLoader(_data(48, seed=1), batch_size=48)
    try:
        trainer.fit(model, *loaders, ckpt_path=callback.resume_checkpoint())
    finally:
        trial.trainer = trainer  # for the assertions
    return trainer


class Collector:
    """A trial's sink: keeps each report and a copy of its checkpoint folder; raises SystemExit
    (as Ray Tune's report does when the scheduler stops the trial) after ``stop_after`` epochs."""

    def __init__(self, folder=None, stop_after: int | None = None):
        self.reports: list[dict] = []
        self.folder = folder
        self.stop_after = stop_after

    def __call__(self, metrics: dict, checkpoint: str | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint is not None and self.folder is not None:
            shutil.copytree(checkpoint, self.folder / f"epoch-{metrics['epoch']}")
        if self.stop_after is not None and metrics["epoch"] >= self.stop_after:
            raise SystemExit(0)


def context(sink, epochs: int = 3, checkpointing: bool = False, restore_from=None) -> TrialContext:
    return TrialContext(number=7, max_epochs=epochs, seed=5, _sink=sink, checkpointing=checkpointing,
                        restore_from=restore_from)


def test_each_epoch_is_reported_under_stepsize_names_with_the_lr():
    sink = Collector()
    fit_tiny(context(sink, epochs=3))
    assert [r[Result.EPOCH] for r in sink.reports] == [1, 2, 3]
    for report in sink.reports:
        # train/loss was logged on_step and on_epoch: its _step/_epoch copies are left out
        assert set(report) == {"epoch", "train_loss", "val_loss", "lr"}
        assert all(isinstance(v, float) for k, v in report.items() if k != "epoch")
    # warmup_cosine over 3 epochs of 6 batches: the LR of each epoch's last batch falls after the warm-up
    lrs = [r["lr"] for r in sink.reports]
    assert lrs[0] > lrs[1] > lrs[2] >= 0 and lrs[0] <= CONFIG["learning_rate"]


def test_reports_follow_validation_and_every_epoch_without_it():
    sink = Collector()
    fit_tiny(context(sink, epochs=4), check_val_every_n_epoch=2)
    assert [r["epoch"] for r in sink.reports] == [2, 4]
    sink = Collector()
    fit_tiny(context(sink, epochs=2), config={"learning_rate": 0.1}, module_kw={"val_check": False})
    assert [(r["epoch"], "val_loss" in r) for r in sink.reports] == [(1, False), (2, False)]


def test_metric_naming_rules():
    logged = {"val/loss": torch.tensor(0.5), "acc": 0.75, "acc_step": 0.7, "acc_epoch": 0.75, "loss_step": 1.0,
              "hist": torch.ones(3), "flag": True, "epoch": 3.0}
    trainer = SimpleNamespace(callback_metrics=logged)
    callback = StepsizeCallback(context(Collector()), {"val/loss": "val_loss"})
    assert callback.metrics(trainer) == {"val_loss": 0.5, "acc": 0.75, "loss_step": 1.0}
    only = StepsizeCallback(context(Collector()), {"val/loss": "val_loss"}, only_named=True)
    assert only.metrics(trainer) == {"val_loss": 0.5}


def test_a_scheduler_stop_ends_the_fit_with_the_system_exit_ray_tune_expects():
    sink = Collector(stop_after=2)
    trial = context(sink, epochs=5)
    with pytest.raises(SystemExit):
        fit_tiny(trial)
    assert [r["epoch"] for r in sink.reports] == [1, 2]
    assert trial.trainer.state.status == TrainerStatus.INTERRUPTED and trial.trainer.current_epoch == 1


@pytest.fixture
def torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def workload(config: dict, trial: TrialContext) -> None:
    """A workload as a study names it: ``tests.unit.integrations.test_lightning:workload``."""
    fit_tiny(trial, config=config, module_kw={"nan_at_step": trial.options.get("nan_at_step")})


def _runtime(**options) -> TrialRuntime:
    return TrialRuntime(workload="tests.unit.integrations.test_lightning:workload", max_epochs=4, seed=0, cpus=1,
                        gpu=0, options=options)


def test_through_the_trial_runner_a_stop_is_not_a_failure(torch_threads):
    sink = Collector(stop_after=2)
    with pytest.raises(SystemExit):  # reaches Ray Tune, which ends the trial as stopped (PRUNED)
        run_trial(dict(CONFIG), _runtime(), sink, checkpointing=True)
    assert [r["epoch"] for r in sink.reports] == [1, 2]
    assert not any(Result.TRIAL_FAILED in r for r in sink.reports)


def test_a_nan_batch_loss_stops_the_trial_as_diverged_inside_the_epoch(torch_threads):
    sink = Collector()
    run_trial(dict(CONFIG), _runtime(nan_at_step=8), sink)  # 6 batches an epoch: the 3rd of epoch 2
    assert [r["epoch"] for r in sink.reports] == [1, 2]
    assert sink.reports[-1][Result.DIVERGED] == 1.0 and sink.reports[-1][Result.DIVERGED_REASON] == "the loss became nan"
    with pytest.raises(TrialDiverged):
        fit_tiny(context(Collector(), epochs=2), module_kw={"nan_at_step": 0})


def test_a_resumed_fit_continues_after_its_checkpoint_as_if_never_stopped(tmp_path):
    straight = Collector()
    fit_tiny(context(straight, epochs=4))
    first = Collector(tmp_path, stop_after=2)
    with pytest.raises(SystemExit):
        fit_tiny(context(first, epochs=4, checkpointing=True))
    folder = tmp_path / "epoch-2"
    assert {p.name for p in folder.iterdir()} == {CHECKPOINT_FILE, "model.pt", "stepsize.json"}
    assert checkpoint_meta(folder) == {"number": 7, "epoch": 2, "files": True}
    assert isinstance(load_model(folder), Tiny)

    torch.manual_seed(999)  # the process's generators move on; the checkpoint brings them back
    rest = Collector()
    trial = context(rest, epochs=4, checkpointing=True, restore_from=str(folder))
    fit_tiny(trial)
    assert [r["epoch"] for r in first.reports + rest.reports] == [1, 2, 3, 4]
    for expected, got in zip(straight.reports, first.reports + rest.reports):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-7), got["epoch"]


def test_configure_optimizers_maps_each_schedule_to_lightning():
    model = nn.Linear(3, 2)
    out = configure_optimizers(model, {"learning_rate": 0.01, "optimizer": "adam"}, steps_per_epoch=5, epochs=3)
    assert set(out) == {"optimizer"} and isinstance(out["optimizer"], torch.optim.Adam)
    assert out["optimizer"].param_groups[0]["lr"] == 0.01
    by_schedule = {
        name: configure_optimizers(model, {"learning_rate": 0.1, "schedule": name}, monitor="val/loss",
                                   steps_per_epoch=5, epochs=3)["lr_scheduler"]
        for name in ("onecycle", "warmup_cosine", "cyclic", "cosine", "step", "plateau")
    }
    assert {name: s["interval"] for name, s in by_schedule.items()} == {
        "onecycle": "step", "warmup_cosine": "step", "cyclic": "step", "cosine": "epoch", "step": "epoch",
        "plateau": "epoch"}
    assert by_schedule["plateau"]["monitor"] == "val/loss"
    assert all("monitor" not in s for name, s in by_schedule.items() if name != "plateau")
    assert by_schedule["onecycle"]["scheduler"].total_steps == 15


def test_configure_optimizers_refuses_bad_values_and_needs_a_trainer_or_sizes():
    with pytest.raises(TrialConfigError, match="optimizer"):
        configure_optimizers(nn.Linear(2, 2), {"optimizer": "lbfgs"}, steps_per_epoch=1, epochs=1)
    with pytest.raises(TrialConfigError, match="steps_per_epoch"):
        configure_optimizers(Tiny({}), {"schedule": "onecycle"})


def test_trainer_kwargs_for_a_trial():
    trial = TrialContext(number=0, max_epochs=6, seed=3, device="cuda")
    callback = StepsizeCallback(trial)
    kwargs = trainer_kwargs(trial, callbacks=[callback], max_epochs=2)
    assert kwargs["max_epochs"] == 2 and kwargs["accelerator"] == "gpu" and kwargs["devices"] == 1
    assert kwargs["logger"] is False and kwargs["enable_checkpointing"] is True and kwargs["callbacks"] == [callback]
    assert kwargs["enable_progress_bar"] is False and kwargs["num_sanity_val_steps"] == 0
    cpu = trainer_kwargs(TrialContext(number=0, max_epochs=6, seed=3), quiet=False)
    assert cpu["accelerator"] == "cpu" and cpu["max_epochs"] == 6 and cpu["enable_checkpointing"] is False
    assert cpu["enable_progress_bar"] is True
    pl.Trainer(**cpu)  # accepted as it is


def test_trainer_kwargs_seeds_with_the_trial_seed():
    trial = TrialContext(number=0, max_epochs=1, seed=3)
    trainer_kwargs(trial)
    first = torch.rand(3)
    trainer_kwargs(trial)
    assert torch.equal(torch.rand(3), first)


def test_without_lightning_the_import_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "lightning" or m.startswith("lightning.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.delitem(sys.modules, "orchestrator.integrations.lightning")
    with pytest.raises(LightningMissing, match=r"pip install 'stepsize\[lightning\]'") as missing:
        importlib.import_module("orchestrator.integrations.lightning")
    assert isinstance(missing.value, ImportError) and missing.value.exit_code == 2
