"""A complete user workload: softmax regression on scikit-learn's wine data set.

stepsize calls ``train(config, trial)`` once per trial, in a Ray worker process:
``config`` holds the sampled values (learning_rate, batch_size, momentum, ...), ``trial`` is a
``stepsize`` TrialContext. Report once per epoch; the scheduler may stop the trial at any report.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from orchestrator import TrialContext, build_optimizer


@functools.lru_cache(maxsize=1)
def _data() -> tuple[torch.Tensor, ...]:
    """Loaded once per worker process and reused by every trial that process runs."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_wine(return_X_y=True)
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    as_x = lambda a: torch.tensor(scaler.transform(a), dtype=torch.float32)  # noqa: E731
    return as_x(x_tr), torch.tensor(y_tr), as_x(x_val), torch.tensor(y_val)


def train(config: dict, trial: TrialContext) -> None:
    x_tr, y_tr, x_val, y_val = _data()
    torch.manual_seed(trial.seed)
    model = nn.Linear(x_tr.shape[1], 3)
    optimizer = build_optimizer(config, model)  # SGD with the searched learning rate and momentum
    loss_fn = nn.CrossEntropyLoss()
    batch_size = int(config.get("batch_size", 32))
    # Checkpointed every epoch from here on; a resumed or retried trial continues after `done`.
    done = trial.restore(model=model, optimizer=optimizer)
    for _ in range(done, trial.max_epochs):
        model.train()
        order = torch.randperm(len(x_tr))
        total = 0.0
        for start in range(0, len(x_tr), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
        trial.report(
            train_loss=total / len(x_tr),
            val_loss=loss_fn(logits, y_val).item(),
            val_accuracy=(logits.argmax(1) == y_val).float().mean().item(),
            lr=optimizer.param_groups[0]["lr"],
        )
