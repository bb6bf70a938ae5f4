"""LR scaling with the batch size: the rules, and a trial's searched LR made effective for its
batch size with the base kept beside it."""

from __future__ import annotations

import pytest

from orchestrator.training import scaled_learning_rate
from orchestrator.training.lr_scaling import apply_lr_scaling


def test_lr_scaling_rules():
    assert scaled_learning_rate(0.1, 512, "none", 256) == 0.1
    assert scaled_learning_rate(0.1, 512, "linear", 256) == pytest.approx(0.2)
    assert scaled_learning_rate(0.1, 64, "linear", 256) == pytest.approx(0.025)
    assert scaled_learning_rate(0.1, 1024, "sqrt", 256) == pytest.approx(0.2)
    assert scaled_learning_rate(0.1, 64, "sqrt", 256) == pytest.approx(0.05)
    assert scaled_learning_rate(0.1, 32, "linear", 32) == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"'cubic'.*none, linear, sqrt"):
        scaled_learning_rate(0.1, 32, "cubic", 32)
    for bad in ((0.0, 32, "linear", 32), (0.1, 0, "linear", 32), (0.1, 32, "linear", 2.5)):
        with pytest.raises(ValueError):
            scaled_learning_rate(*bad)


def test_lr_scaling_makes_the_trial_lr_effective_and_keeps_the_base():
    params = {"learning_rate": 0.1, "batch_size": 64}
    assert apply_lr_scaling(params, "none", 256) is params
    linear = apply_lr_scaling(params, "linear", 256)
    assert linear == {"learning_rate": pytest.approx(0.025), "base_learning_rate": 0.1, "batch_size": 64}
    assert apply_lr_scaling(params, "sqrt", 256)["learning_rate"] == pytest.approx(0.05)
    assert apply_lr_scaling({"learning_rate": 0.1}, "linear", 256)["learning_rate"] == pytest.approx(0.1)
