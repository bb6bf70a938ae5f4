"""Curves the LR range tests run on (no tests here): a synthetic loss valley with a known answer,
a step function that follows it, and the digits CNN's real batches."""

from __future__ import annotations

import math
import random

from torch import nn

from orchestrator.lr_range.ramp import lr_range_test
from orchestrator.lr_range.result import LRRangeResult
from orchestrator.workloads.digits import digits_lr_range_setup

# --------------------------------------------------------------------------------------------
# A synthetic "model": the loss measured after an update is a known function of that update's LR


def valley(lr: float) -> float:
    """Flat at 2.3 for small LRs, falls fastest at 1e-2 (down to 0.5), then rises steeply: its
    minimum is near lr 0.25 and it passes 4x its minimum at about 0.8."""
    x = math.log10(lr)
    return 2.3 - 1.8 / (1 + math.exp(-3 * (x + 2))) + 0.05 * math.exp(6 * (x + 0.5))


class FakeStep:
    """A ``step_fn``: returns ``curve(lr of the previous update)`` (+ deterministic noise), the way
    a real step returns the loss measured before its own update. Records every LR it is given."""

    def __init__(self, curve, noise: float = 0.0, spikes: dict[int, float] | None = None, seed: int = 0):
        self.curve, self.noise, self.spikes = curve, noise, spikes or {}
        self.rng = random.Random(seed)
        self.previous: float | None = None
        self.calls = 0
        self.seen: list[float] = []

    def __call__(self, model, loss_fn, batch, optimizer):
        lr = optimizer.param_groups[0]["lr"]
        self.seen.append(lr)
        loss = 2.3 if self.previous is None else self.curve(self.previous)
        loss += self.rng.gauss(0.0, self.noise) if self.noise else 0.0
        loss = self.spikes.get(self.calls, loss)
        self.previous = lr
        self.calls += 1
        return loss


def synthetic(curve=valley, steps: int = 100, **kwargs) -> tuple[LRRangeResult, FakeStep]:
    step = FakeStep(curve, noise=kwargs.pop("noise", 0.0), spikes=kwargs.pop("spikes", None))
    model = nn.Linear(1, 1)
    kwargs.setdefault("num_steps", steps)  # a ramp of exactly one epoch of ``steps`` batches
    result = lr_range_test(model, nn.MSELoss(), [None] * steps, {"momentum": 0.9}, step_fn=step, **kwargs)
    return result, step


# --------------------------------------------------------------------------------------------
# Real training: the digits CNN


def digits_cnn(batch_size: int = 64, seed: int = 0):
    return digits_lr_range_setup({"batch_size": batch_size}, {}, seed, kind="cnn")
