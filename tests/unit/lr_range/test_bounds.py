"""The LR range test inside a study: the configuration it trains, how it narrows the LR range,
and ``stepsize lr-find``."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli import main
from orchestrator.errors import SpecError
from orchestrator.lr_range.bounds import (
    declared_lr_range,
    narrowed_spec,
    range_test_config,
)
from orchestrator.lr_range.result import LRRangeResult
from orchestrator.spec import spec_from_mapping
from tests.conftest import ROOT


def _result(bounds, confident=True, suggested=0.1):
    return LRRangeResult(
        lrs=[0.01, 0.1, 1.0], losses=[2.0, 1.5, 3.0], smoothed_losses=[2.0, 1.8, 2.1], analysis_losses=[2.0, 1.7],
        initial_loss=2.3, min_lr=1e-3, max_lr=10.0, mode="exponential", smoothing=0.98, divergence_threshold=4.0,
        num_steps=3, steps_per_epoch=3, planned_steps=3, diverged=True, stop_reason="diverged", divergence_lr=1.0,
        min_loss_lr=0.1, estimates={}, suggested_lr=suggested, bounds=bounds, elapsed_s=0.1, confident=confident,
    )


def test_range_test_trains_at_the_study_batch_size_with_typical_values():
    spec = spec_from_mapping({"name": "x"})  # default preset: batch_size choices, momentum range
    config = range_test_config(spec)
    assert "learning_rate" not in config
    assert config["batch_size"] == 64 and 0.5 < config["momentum"] < 0.99
    scaled = spec_from_mapping({"name": "x", "lr_scaling": {"rule": "linear", "reference_batch_size": 128}})
    assert range_test_config(scaled)["batch_size"] == 128  # the searched LR is the base at the reference
    assert range_test_config(spec, batch_size=32)["batch_size"] == 32


def test_confident_bounds_narrow_the_declared_range():
    spec = spec_from_mapping({"name": "x", "lr_bounds": "auto"})
    narrowed, record = narrowed_spec(spec, _result((0.01, 0.5)))
    assert declared_lr_range(narrowed) == (0.01, 0.5)
    assert record["declared"] == [1e-4, 1.0] and record["chosen"] == [0.01, 0.5]
    assert narrowed.search_space.get("learning_rate").distribution.log
    assert narrowed.search_space.names == spec.search_space.names


@pytest.mark.parametrize("bounds, confident", [((0.01, 0.5), False), ((0.9, 2.0), True), (None, False)])
def test_declared_range_is_kept_when_the_test_cannot_be_trusted(bounds, confident):
    spec = spec_from_mapping({"name": "x", "lr_bounds": "auto"})
    kept, record = narrowed_spec(spec, _result(bounds, confident))
    assert kept is spec and record["chosen"] == [1e-4, 1.0] and record["note"]


def test_lr_bounds_auto_needs_a_float_learning_rate():
    with pytest.raises(SpecError) as info:
        spec_from_mapping({"name": "x", "lr_bounds": "auto", "search_space": {"momentum": {"type": "float", "low": 0, "high": 1}}})
    assert info.value.field == "lr_bounds"
    with pytest.raises(SpecError):
        spec_from_mapping({"name": "x", "lr_bounds": "sometimes"})


def test_lr_find_command_on_the_example_study(workdir, capsys):
    code = main(["lr-find", str(ROOT / "examples" / "digits.yaml"), "--json", "--plot", "curve.png"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    # a 23-batch epoch is short of the default 100 steps: the ramp runs over 3 epochs
    assert result["steps_per_epoch"] == 23 and result["num_steps"] == result["planned_steps"] == 69
    assert result["fraction_of_epoch"] == 3.0
    low, high = result["bounds"]
    assert result["min_lr"] <= low < result["suggested_lr"] < high <= result["max_lr"]
    assert (workdir / "curve.png").stat().st_size > 10_000


def test_lr_find_rejects_a_bad_study(workdir, capsys):
    (workdir / "s.yaml").write_text("name: x\nworkload: digits_cnn\nbudget: {trials: zero}\n")
    assert main(["lr-find", "s.yaml"]) == 2
    assert "`budget.trials`" in capsys.readouterr().err
