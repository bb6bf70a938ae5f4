"""A plain training script (argparse, no stepsize types): an MLP on scikit-learn's digits.

Run it alone (`python train_digits.py --learning_rate 0.05 --epochs 5`) or let stepsize tune it
(`stepsize launch script.yaml` from examples/). The only stepsize lines are the import of the
reporting API and the calls to it: `report(...)` once per epoch, and the checkpoint folder.
"""

from __future__ import annotations

import argparse
import os

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from orchestrator.integrations.script import checkpoint_dir, report, resume_dir, start_epoch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learning_rate", type=float, default=0.05)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=args.momentum)
    generator = torch.Generator().manual_seed(args.seed)
    loss_fn = nn.CrossEntropyLoss()

    first = 1
    if resume_dir():  # stepsize resumed or retried this trial: continue after the checkpoint's epoch
        state = torch.load(os.path.join(resume_dir(), "train_state.pt"), weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        first = start_epoch() + 1

    for epoch in range(first, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_tr), generator=generator)
        total = 0.0
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_tr[batch]), y_tr[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = loss_fn(logits, y_val).item()
            val_accuracy = (logits.argmax(dim=1) == y_val).float().mean().item()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state()}, os.path.join(checkpoint_dir(), "train_state.pt"))
        report(epoch=epoch, train_loss=total / len(x_tr), val_loss=val_loss, val_accuracy=val_accuracy)


if __name__ == "__main__":
    main()
