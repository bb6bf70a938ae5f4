"""A PyTorch Lightning workload: an MLP on scikit-learn's handwritten digits (no downloads).

stepsize calls ``train(config, trial)`` once per trial. The module logs under Lightning-style
names (``train/loss``, ``val/loss``, ``val/accuracy``); :data:`NAMES` maps them to the names the
study's objective and the divergence guard use. The searched optimizer and LR schedule come from
``configure_optimizers``; the callback reports each epoch, lets ASHA stop the fit, and checkpoints
so a resumed or retried trial continues from its last epoch. Needs ``pip install 'stepsize[lightning]'``.
"""

from __future__ import annotations

import functools
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from orchestrator import TrialContext
from orchestrator.integrations.lightning import StepsizeCallback, configure_optimizers, trainer_kwargs

NAMES = {"train/loss": "train_loss", "val/loss": "val_loss", "val/accuracy": "val_accuracy"}


@functools.lru_cache(maxsize=1)
def _data() -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val), loaded once per worker process; pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_val, y_tr, y_val = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    as_x = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    return as_x(x_tr), torch.from_numpy(y_tr), as_x(x_val), torch.from_numpy(y_val)


class DigitsClassifier(pl.LightningModule):
    """64 pixels -> ``hidden`` -> ``hidden`` -> 10 classes, trained with the trial's optimizer and schedule."""

    def __init__(self, config: dict[str, Any], hidden: int = 64) -> None:
        super().__init__()
        self.config = dict(config)
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> dict[str, Any]:
        # The searched optimizer (sgd, adam...) and LR schedule; plateau watches the logged val/loss.
        return configure_optimizers(self, self.config, monitor="val/loss")


def train(config: dict[str, Any], trial: TrialContext) -> None:
    x_tr, y_tr, x_val, y_val = _data()
    callback = StepsizeCallback(trial, NAMES)
    trainer = pl.Trainer(**trainer_kwargs(trial, callbacks=[callback]))  # seeds with trial.seed
    model = DigitsClassifier(config, hidden=int(trial.options.get("hidden", 64)))
    batch_size = int(config.get("batch_size", 64))
    train_loader = DataLoader(TensorDataset(x_tr, y_tr), batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=512)
    # None for a fresh trial; a resumed or retried one continues after its last reported epoch.
    trainer.fit(model, train_loader, val_loader, ckpt_path=callback.resume_checkpoint())
