"""The built-in workload: scikit-learn's handwritten digits (8x8, 10 classes) with an MLP or a
small CNN, trained with the configured optimizer (SGD with momentum by default) and LR schedule.

The data set is loaded and split once per worker process (Ray reuses the process for many
trials); the split is fixed by the study seed, so every trial sees the same validation set.
The LR range test setups (:func:`digits_mlp_lr_range_setup`, :func:`digits_cnn_lr_range_setup`)
start from the same model, initialisation and batch order as a trial with the same seed.

Each epoch reports ``train_loss``, ``val_loss``, ``val_accuracy``, ``epoch_time_s`` and the
learning rate of the first parameter group: ``lr``, the rate the epoch's last batch was trained
with, and ``lr_min`` / ``lr_max`` over the epoch's batches (equal for epoch-wise schedules).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from orchestrator.errors import TrialConfigError
from orchestrator.training.distributed import prepare_model, shard
from orchestrator.training.optimizers import build_optimizer
from orchestrator.training.schedules import build_scheduler
from orchestrator.trial.context import TrialContext

DEFAULT_BATCH_SIZE = 64
VAL_FRACTION = 0.2


@functools.lru_cache(maxsize=4)
def load_digits_split(split_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val), features scaled to [0, 1], a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_val, y_tr, y_val = train_test_split(
        x, y, test_size=VAL_FRACTION, random_state=split_seed, stratify=y
    )
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_val), torch.from_numpy(y_val))


def build_model(kind: str, options: Mapping[str, Any]) -> nn.Module:
    """``mlp``: 64-h-h-10 with ReLU; ``cnn``: two 3x3 convolutions, a pool and a dense head."""
    if kind == "mlp":
        hidden = int(options.get("hidden", 128))
        return nn.Sequential(
            nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )
    channels = int(options.get("channels", 16))
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * 16, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def train_mlp(config: dict[str, Any], trial: TrialContext) -> None:
    """Train the MLP on digits; reports every epoch."""
    _train("mlp", config, trial)


def train_cnn(config: dict[str, Any], trial: TrialContext) -> None:
    """Train the small CNN on digits; reports every epoch."""
    _train("cnn", config, trial)


def _train(kind: str, config: dict[str, Any], trial: TrialContext) -> None:
    x_tr, y_tr, x_val, y_val = load_digits_split(int(trial.options.get("split_seed", 0)))
    torch.manual_seed(trial.seed)
    device = torch.device(trial.device)
    model = build_model(kind, trial.options).to(device)
    x_tr, y_tr, x_val, y_val = (t.to(device) for t in (x_tr, y_tr, x_val, y_val))
    optimizer = build_optimizer(config, model)
    model = prepare_model(model)  # DistributedDataParallel when the trial is a DDP job (resources.workers)
    loss_fn = nn.CrossEntropyLoss()
    batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))
    generator = torch.Generator().manual_seed(trial.seed)
    n = x_tr.shape[0]
    schedule = build_scheduler(config, optimizer, math.ceil(n / batch_size), trial.max_epochs)
    start = trial.restore(model=model, optimizer=optimizer, schedule=schedule, generator=generator)
    for _ in range(start, trial.max_epochs):
        started = time.perf_counter()
        model.train()
        order = shard(torch.randperm(n, generator=generator)).to(device)  # this process's share under DDP
        total, seen = 0.0, 0
        lrs: list[float] = []
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            batch_loss = loss.item()
            trial.check_loss(batch_loss)  # a diverging trial stops here, inside the epoch
            loss.backward()
            lrs.append(schedule.lr)
            optimizer.step()
            schedule.step_batch()
            total += batch_loss * len(idx)
            seen += len(idx)
        train_loss = total / seen
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = loss_fn(logits, y_val).item()
            val_accuracy = (logits.argmax(1) == y_val).float().mean().item()
        schedule.step_epoch(val_loss)
        trial.report(
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=lrs[-1],
            lr_min=min(lrs),
            lr_max=max(lrs),
            epoch_time_s=time.perf_counter() - started,
        )


def digits_lr_range_setup(
    config: Mapping[str, Any], options: Mapping[str, Any], seed: int, *, kind: str = "cnn"
) -> tuple[nn.Module, nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A fresh ``kind`` (``mlp`` or ``cnn``) model, cross-entropy, and one epoch of training batches
    of ``config["batch_size"]`` (default 64)."""
    if kind not in ("mlp", "cnn"):
        raise TrialConfigError(f"kind is {kind!r}; expected mlp or cnn")
    batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))
    if batch_size < 1:
        raise TrialConfigError(f"batch_size is {batch_size}; expected at least 1")
    x_tr, y_tr, _, _ = load_digits_split(int(options.get("split_seed", 0)))
    torch.manual_seed(seed)
    model = build_model(kind, options)
    order = torch.randperm(x_tr.shape[0], generator=torch.Generator().manual_seed(seed))
    batches = [
        (x_tr[order[start : start + batch_size]], y_tr[order[start : start + batch_size]])
        for start in range(0, x_tr.shape[0], batch_size)
    ]
    return model, nn.CrossEntropyLoss(), batches


def digits_cnn_lr_range_setup(config: Mapping[str, Any], options: Mapping[str, Any], seed: int):
    """:func:`digits_lr_range_setup` for ``digits_cnn``."""
    return digits_lr_range_setup(config, options, seed, kind="cnn")


def digits_mlp_lr_range_setup(config: Mapping[str, Any], options: Mapping[str, Any], seed: int):
    """:func:`digits_lr_range_setup` for ``digits_mlp``."""
    return digits_lr_range_setup(config, options, seed, kind="mlp")
