"""Per-epoch checkpoints: a digits trial stopped after epoch k and continued from its checkpoint
reports exactly what the uninterrupted trial reports (model, optimizer, LR schedule, data order,
divergence guard and RNG states all come back)."""

from __future__ import annotations

import pytest
import torch

from orchestrator import TrialContext
from orchestrator.errors import CheckpointError
from orchestrator.trial.checkpoints import (
    find_checkpoints,
    latest_checkpoint,
    load_model,
    read_checkpoint,
    write_checkpoint,
)
from orchestrator.workloads import digits

CONFIG = {"learning_rate": 0.05, "batch_size": 64, "momentum": 0.9, "schedule": "warmup_cosine", "warmup_epochs": 1}
METRICS = ("train_loss", "val_loss", "val_accuracy", "lr")


class _Stop(Exception):
    pass


def _run(epochs: int, folder_root, restore_from=None, stop_after: int | None = None) -> list[dict]:
    """Train the digits MLP in-process; every report saves a checkpoint into folder_root/epoch-N."""
    reports: list[dict] = []

    def sink(metrics: dict, folder: str | None = None) -> None:
        reports.append(metrics)
        if folder is not None:
            import shutil

            shutil.copytree(folder, folder_root / f"epoch-{metrics['epoch']}")
        if stop_after is not None and metrics["epoch"] >= stop_after:
            raise _Stop

    context = TrialContext(number=3, max_epochs=epochs, seed=11, options={"hidden": 32}, _sink=sink,
                           checkpointing=True, restore_from=restore_from)
    try:
        digits.train_mlp(CONFIG, context)
    except _Stop:
        pass
    return reports


def test_continuing_from_a_checkpoint_reproduces_the_uninterrupted_trial(tmp_path):
    straight = _run(5, tmp_path / "a")
    (tmp_path / "b").mkdir()
    first = _run(5, tmp_path / "b", stop_after=2)
    torch.manual_seed(12345)  # the process's RNG moves on; the checkpoint must bring it back
    rest = _run(5, tmp_path / "c", restore_from=str(tmp_path / "b" / "epoch-2"))
    assert [r["epoch"] for r in first] == [1, 2]
    assert [r["epoch"] for r in rest] == [3, 4, 5]
    for expected, got in zip(straight, first + rest):
        for key in METRICS:
            assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), (got["epoch"], key)


def test_checkpoint_folder_holds_meta_state_and_whole_model(tmp_path):
    (tmp_path / "a").mkdir()
    _run(2, tmp_path / "a")
    folder = tmp_path / "a" / "epoch-2"
    model = load_model(folder)
    assert isinstance(model, torch.nn.Module)
    x = torch.zeros(1, 64)
    assert model(x).shape == (1, 10)


def test_reading_a_checkpoint_without_a_registered_object_names_it(tmp_path):
    model = torch.nn.Linear(2, 2)
    write_checkpoint(tmp_path, {"model": model}, number=1, epoch=4)
    with pytest.raises(CheckpointError, match="'optimizer'"):
        read_checkpoint(tmp_path, {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)})
    assert read_checkpoint(tmp_path, {"model": model}) == 4


def test_registering_an_object_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="state_dict"):
        write_checkpoint(tmp_path, {"model": torch.nn.Linear(2, 2), "epochs": 3}, number=0, epoch=1)


def test_find_checkpoints_groups_by_trial_and_latest_respects_the_told_epoch(tmp_path):
    model = torch.nn.Linear(2, 2)
    for trial, epochs in ((0, (1, 2, 3)), (1, (4,))):
        for epoch in epochs:
            write_checkpoint(tmp_path / f"trial_{trial}" / f"checkpoint_{epoch:06d}", {"model": model}, trial, epoch)
    found = find_checkpoints(tmp_path)
    assert sorted(found) == [0, 1]
    assert [epoch for epoch, _ in found[0]] == [1, 2, 3]
    assert latest_checkpoint(found[0], at_most_epoch=2)[0] == 2
    assert latest_checkpoint(found[0])[0] == 3
    assert latest_checkpoint(found[1], at_most_epoch=3) is None
    assert find_checkpoints(tmp_path / "missing") == {}


def test_a_model_that_cannot_be_pickled_is_checkpointed_by_its_weights(tmp_path):
    class Local(torch.nn.Module):  # defined in a function: pickle cannot find its class
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.layer(x)

    saved = Local()
    write_checkpoint(tmp_path, {"model": saved}, number=0, epoch=2)
    assert load_model(tmp_path) is None  # no whole model to log to MLflow
    fresh = Local()
    assert read_checkpoint(tmp_path, {"model": fresh}) == 2
    assert torch.equal(fresh.layer.weight, saved.layer.weight)
