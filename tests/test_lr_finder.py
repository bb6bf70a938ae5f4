"""The LR range test: the ramp, early stopping, the one-epoch cap, smoothing, the suggestion rule
(on synthetic curves with known answers and on the digits CNN), the plot, and the workload hook.
No Ray."""

from __future__ import annotations

import json
import math
import random
import sys
import textwrap

import pytest
import torch
from torch import nn

from orchestrator.lr_finder import (
    LRRangeResult,
    LRRangeSetupMissing,
    lr_range_test,
    lr_schedule,
    plot_lr_range,
    run_lr_range_for_workload,
    suggest,
)
from orchestrator.workloads.digits_lr_range import digits_lr_range_setup

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
    result = lr_range_test(model, nn.MSELoss(), [None] * steps, {"momentum": 0.9}, step_fn=step, **kwargs)
    return result, step


# --------------------------------------------------------------------------------------------
# The ramp


def test_schedule_goes_from_min_to_max_evenly():
    expo = lr_schedule(1e-6, 1.0, 7)
    assert expo[0] == pytest.approx(1e-6) and expo[-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in zip(expo, expo[1:])]
    assert all(r == pytest.approx(10.0) for r in ratios)
    lin = lr_schedule(0.1, 1.0, 10, "linear")
    assert lin[0] == pytest.approx(0.1) and lin[-1] == pytest.approx(1.0)
    assert all(b - a == pytest.approx(0.1) for a, b in zip(lin, lin[1:]))


def test_losses_are_paired_with_the_update_they_follow():
    result, step = synthetic(steps=40, min_lr=1e-5, max_lr=1e-1, divergence_threshold=None)
    assert result.num_steps == 40 and len(result.lrs) == 39  # the last batch is only measured
    assert result.lrs == pytest.approx(lr_schedule(1e-5, 1e-1, 39))
    assert step.seen[:-1] == pytest.approx(result.lrs) and step.seen[-1] == 0.0
    assert result.losses == pytest.approx([valley(lr) for lr in result.lrs])
    assert result.initial_loss == pytest.approx(2.3)


def test_smoothing_is_a_bias_corrected_ema():
    result, _ = synthetic(steps=60, noise=0.05, min_lr=1e-6, max_lr=1e-2, smoothing=0.9, divergence_threshold=None)
    avg, expected = 0.0, []
    for i, loss in enumerate(result.losses, start=1):
        avg = 0.9 * avg + 0.1 * loss
        expected.append(avg / (1 - 0.9**i))
    assert result.smoothed_losses == pytest.approx(expected)
    assert result.smoothed_losses[0] == pytest.approx(result.losses[0])  # bias correction
    # on the flat part (pure noise) the smoothed curve is much steadier than the raw one
    flat = slice(10, 30)
    spread = lambda xs: max(xs) - min(xs)  # noqa: E731
    assert spread(result.smoothed_losses[flat]) < 0.5 * spread(result.losses[flat])
    unsmoothed, _ = synthetic(steps=20, noise=0.05, min_lr=1e-6, max_lr=1e-2, smoothing=0.0, divergence_threshold=None)
    assert unsmoothed.smoothed_losses == pytest.approx(unsmoothed.losses)


def test_stops_when_the_smoothed_loss_passes_the_threshold():
    result, _ = synthetic(steps=100, min_lr=1e-6, max_lr=100.0, smoothing=0.5)
    assert result.diverged and result.num_steps < 100
    assert "exceeded 4 x" in result.stop_reason
    assert result.divergence_lr is not None and result.divergence_lr < 100.0
    best = min(result.smoothed_losses[:-1])
    assert result.smoothed_losses[-1] > 4 * best


def test_stops_on_nan():
    curve = lambda lr: valley(lr) if lr < 0.1 else math.nan  # noqa: E731
    result, _ = synthetic(curve, steps=100, min_lr=1e-6, max_lr=10.0, divergence_threshold=None)
    assert result.diverged and "nan" in result.stop_reason
    assert math.isnan(result.losses[-1]) and result.lrs[-1] >= 0.1
    assert result.suggested_lr is not None and result.suggested_lr < 0.1


# --------------------------------------------------------------------------------------------
# The suggestion


def test_suggestion_on_a_known_valley():
    result, _ = synthetic(steps=100, noise=0.01, min_lr=1e-6, max_lr=10.0)
    lo, hi = result.bounds
    # steepest fall at 1e-2, lowest loss near 0.25, exploding near 1: a good LR is 1e-2..1e-1
    assert 5e-3 <= result.suggested_lr <= 0.1
    assert lo < result.suggested_lr < hi <= result.divergence_lr
    assert 0.1 <= result.min_loss_lr <= 0.5
    assert result.estimates["minimum"] == pytest.approx(result.min_loss_lr / 10)
    assert result.estimates["steep"] == pytest.approx(1e-2, rel=0.2)
    assert result.suggested_lr == min(result.estimates["steep"], result.estimates["minimum"])
    assert result.confident


@pytest.mark.parametrize(
    "spikes",
    [
        {20: 9.0, 21: 6.0},  # two points high at a fifth of the ramp (lr ~2e-5)
        {20: 5.0, 21: 6.0, 22: 5.5, 23: 5.0, 24: 4.0},  # a wider bump, beyond the running median
        {3: 8.0, 4: 7.0},  # right at the start
    ],
)
def test_an_early_spike_fools_the_steepest_point_but_not_the_suggestion(spikes):
    result, _ = synthetic(steps=100, noise=0.01, spikes=spikes, min_lr=1e-6, max_lr=10.0)
    # the plain rule, the steepest fall between two raw points, is the fall back from the spike
    naive = min(range(1, len(result.losses)), key=lambda i: result.losses[i] - result.losses[i - 1])
    assert result.lrs[naive] < 1e-4
    assert result.estimates["steep"] == pytest.approx(1e-2, rel=0.2)
    assert 5e-3 <= result.suggested_lr <= 0.1
    assert result.divergence_lr > 0.1  # the spike is not the edge: the loss came back


def test_flat_curve_gives_a_weak_not_confident_suggestion():
    result, _ = synthetic(lambda lr: 2.3, steps=50, noise=0.01, min_lr=1e-6, max_lr=1e-3)
    assert not result.confident
    assert any("weak" in note for note in result.notes)
    assert any("never rose" in note for note in result.notes)


def test_suggest_can_be_rerun_from_a_saved_result():
    result, _ = synthetic(steps=80, noise=0.01, min_lr=1e-6, max_lr=10.0)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    again = suggest(LRRangeResult.from_dict(data))
    assert again.suggested_lr == pytest.approx(result.suggested_lr)
    assert again.bounds == pytest.approx(result.bounds)
    assert data["fraction_of_epoch"] == pytest.approx(result.num_steps / 80)


# --------------------------------------------------------------------------------------------
# Real training: the digits CNN


def digits_cnn(batch_size: int = 64, seed: int = 0):
    return digits_lr_range_setup({"batch_size": batch_size}, {}, seed, kind="cnn")


def test_digits_cnn_diverges_early_and_suggests_below_the_edge():
    model, loss_fn, batches = digits_cnn()
    result = lr_range_test(model, loss_fn, batches, {"momentum": 0.9}, min_lr=1e-5, max_lr=1e4)
    assert result.steps_per_epoch == len(batches) == 23
    assert result.diverged and result.num_steps < result.steps_per_epoch
    assert result.divergence_lr is not None
    assert result.min_lr <= result.suggested_lr < result.divergence_lr
    assert result.bounds[0] >= result.min_lr and result.bounds[1] <= result.divergence_lr


def test_digits_cnn_never_runs_past_one_epoch():
    model, loss_fn, batches = digits_cnn(batch_size=128)
    calls = []
    loss_counting = lambda out, y: calls.append(1) or nn.functional.cross_entropy(out, y)  # noqa: E731
    result = lr_range_test(model, loss_counting, batches, None, min_lr=1e-4, max_lr=1.0, num_steps=500)
    assert len(batches) == 12
    assert result.num_steps <= 12 and len(calls) == result.num_steps
    assert any("capped at one epoch" in note for note in result.notes)
    assert result.fraction_of_epoch <= 1.0


def test_an_iterator_needs_num_steps_and_may_run_out():
    _, _, batches = digits_cnn()
    with pytest.raises(ValueError, match="pass num_steps"):
        lr_range_test(nn.Linear(64, 10), nn.CrossEntropyLoss(), iter(batches))
    result = lr_range_test(nn.Linear(64, 10), nn.CrossEntropyLoss(), iter(batches[:5]), num_steps=10)
    assert result.num_steps == 5 and result.steps_per_epoch is None
    assert any("ran out" in note for note in result.notes)


def test_the_plot_is_written(tmp_path):
    model, loss_fn, batches = digits_cnn()
    result = lr_range_test(model, loss_fn, batches, {"momentum": 0.9}, min_lr=1e-4, max_lr=10.0)
    path = plot_lr_range(result, tmp_path / "lr.png")
    data = (tmp_path / "lr.png").read_bytes()
    assert path.endswith("lr.png") and len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_lr": 0.0}, "min_lr is 0.0"),
        ({"min_lr": -1e-3}, "min_lr is -0.001"),
        ({"max_lr": math.inf}, "max_lr is inf"),
        ({"min_lr": 1.0, "max_lr": 0.1}, "not below max_lr"),
        ({"mode": "cosine"}, "exponential, linear"),
        ({"smoothing": 1.0}, r"\[0, 1\)"),
        ({"smoothing": -0.1}, r"\[0, 1\)"),
        ({"divergence_threshold": 1.0}, "above 1"),
        ({"num_steps": 2}, "at least 3"),
        ({"num_steps": 10.5}, "integer"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [(torch.zeros(1, 2), torch.zeros(1, 1))] * 5, **kwargs)


def test_bad_inputs_raise_clear_value_errors():
    batch = (torch.zeros(1, 2), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="one epoch has 2 batch"):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [batch] * 2)
    with pytest.raises(ValueError, match="expected a torch.nn.Module"):
        lr_range_test(lambda x: x, nn.MSELoss(), [batch] * 5)
    with pytest.raises(ValueError, match="optimizer is a str"):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [batch] * 5, "adam")
    with pytest.raises(ValueError, match=r"\(inputs, targets\) pairs"):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [torch.zeros(1, 2)] * 5)


# --------------------------------------------------------------------------------------------
# On a study's workload


def test_builtin_workload_uses_the_configured_batch_size():
    _, _, batches = digits_lr_range_setup({"batch_size": 100}, {}, 0, kind="mlp")
    assert [len(x) for x, _ in batches[:-1]] == [100] * (len(batches) - 1)
    _, _, default = digits_lr_range_setup({}, {}, 0, kind="mlp")
    assert len(default[0][0]) == 64
    result = run_lr_range_for_workload("digits_mlp", {"batch_size": 32, "momentum": 0.9}, {}, 1, min_lr=1e-4)
    assert result.steps_per_epoch == len(digits_lr_range_setup({"batch_size": 32}, {}, 1, kind="mlp")[2])
    assert result.context["workload"] == "digits_mlp" and result.context["config"]["batch_size"] == 32
    assert result.suggested_lr is not None


def test_user_workload_setup_contract(tmp_path, monkeypatch):
    (tmp_path / "lrmod_user.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def train(config, trial):
            raise AssertionError("the range test does not call the training function")

        def train_lr_range_setup(config, options, seed):
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(240, 4, generator=g)
            y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
            bs = int(config.get("batch_size", 16))
            return nn.Linear(4, 1), nn.MSELoss(), [(x[i:i + bs], y[i:i + bs]) for i in range(0, 240, bs)]

        def other(config, trial):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_lr_range_for_workload("lrmod_user:train", {"batch_size": 16}, {}, 0, min_lr=1e-4, max_lr=10.0)
    assert result.steps_per_epoch == 15 and result.suggested_lr is not None
    with pytest.raises(LRRangeSetupMissing, match=r"other_lr_range_setup\(config, options, seed\)"):
        run_lr_range_for_workload("lrmod_user:other", {}, {}, 0)
    with pytest.raises(ValueError, match="neither a built-in"):
        run_lr_range_for_workload("digits_resnet", {}, {}, 0)
    sys.modules.pop("lrmod_user", None)
