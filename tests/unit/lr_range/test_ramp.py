"""The LR range test's ramp: the LR schedule, pairing losses with updates, smoothing, early
stopping, the default length (100 steps over up to 3 epochs) and the 3-epoch cap, and clear
errors for bad arguments. No Ray.
(The suggestion: test_suggest.py; the plot: test_plot.py; on a study's workload: test_workload.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from orchestrator.lr_range.ramp import lr_range_test, lr_schedule
from tests.unit.lr_range.curves import digits_cnn, synthetic, valley

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
# Real training: the digits CNN


def test_digits_cnn_diverges_early_and_suggests_below_the_edge():
    model, loss_fn, batches = digits_cnn()
    result = lr_range_test(model, loss_fn, batches, {"momentum": 0.9}, min_lr=1e-5, max_lr=1e4)
    assert result.steps_per_epoch == len(batches) == 23
    assert result.planned_steps == 69  # 3 epochs: one is short of the default 100 steps
    assert result.diverged and result.num_steps < result.planned_steps
    assert result.divergence_lr is not None
    assert result.min_lr <= result.suggested_lr < result.divergence_lr
    assert result.bounds[0] >= result.min_lr and result.bounds[1] <= result.divergence_lr


def test_digits_cnn_never_runs_past_three_epochs():
    model, loss_fn, batches = digits_cnn(batch_size=128)
    calls = []
    loss_counting = lambda out, y: calls.append(1) or nn.functional.cross_entropy(out, y)  # noqa: E731
    result = lr_range_test(model, loss_counting, batches, None, min_lr=1e-4, max_lr=1.0, num_steps=500)
    assert len(batches) == 12
    assert result.planned_steps == 36 and result.num_steps <= 36 and len(calls) == result.num_steps
    assert "num_steps 500 capped at 3 epochs (36 batches)" in result.notes
    assert result.fraction_of_epoch <= 3.0


class BatchRecorder:
    """A ``step_fn`` that records which batch each step got and returns a falling loss."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, model, loss_fn, batch, optimizer) -> float:
        self.seen.append(batch)
        return 2.3 - 0.001 * len(self.seen)


@pytest.mark.parametrize(
    ("per_epoch", "num_steps", "steps", "epochs"),
    [
        (6, None, 18, 3.0),  # a small data set: 3 epochs, all it may use
        (40, None, 100, 2.5),  # the default 100 steps over 2.5 epochs
        (250, None, 250, 1.0),  # a long epoch is used whole
        (40, 60, 60, 1.5),  # num_steps overrides the default
        (10, 45, 30, 3.0),  # ... up to 3 epochs
    ],
)
def test_a_short_epoch_is_iterated_again_up_to_three_times(per_epoch, num_steps, steps, epochs):
    step = BatchRecorder()
    batches = list(range(per_epoch))
    result = lr_range_test(nn.Linear(1, 1), nn.MSELoss(), batches, step_fn=step, num_steps=num_steps,
                           min_lr=1e-4, max_lr=1.0, divergence_threshold=None)
    assert result.planned_steps == result.num_steps == steps == len(step.seen)
    assert step.seen == (batches * 3)[:steps]  # the same batches again, in the loader's order
    assert result.fraction_of_epoch == epochs and result.steps_per_epoch == per_epoch
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] == pytest.approx(1.0)


def test_a_dataloader_is_reshuffled_each_epoch_and_trains_for_real():
    from torch.utils.data import DataLoader, TensorDataset

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=gen)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=gen)
    seen: list[torch.Tensor] = []
    loss_fn = lambda out, target: seen.append(target) or nn.functional.cross_entropy(out, target)  # noqa: E731
    torch.manual_seed(0)
    result = lr_range_test(nn.Linear(4, 2), loss_fn, loader, {"momentum": 0.9}, min_lr=1e-3, max_lr=10.0)
    assert len(loader) == 6 and result.planned_steps == 18 and result.fraction_of_epoch == 3.0
    epochs = [torch.cat(seen[i : i + 6]) for i in (0, 6, 12)]
    assert all(sorted(e.tolist()) == sorted(y.tolist()) for e in epochs)  # each pass is the whole data
    assert not torch.equal(epochs[0], epochs[1])  # in a new order
    assert not result.confident and result.confidence_reason.startswith("only 18 steps, under 30")
    assert result.min_lr <= result.bounds[0] <= result.suggested_lr <= result.bounds[1] <= result.max_lr


def test_an_iterator_needs_num_steps_and_may_run_out():
    _, _, batches = digits_cnn()
    with pytest.raises(ValueError, match="pass num_steps"):
        lr_range_test(nn.Linear(64, 10), nn.CrossEntropyLoss(), iter(batches))
    result = lr_range_test(nn.Linear(64, 10), nn.CrossEntropyLoss(), iter(batches[:5]), num_steps=10)
    assert result.num_steps == 5 and result.steps_per_epoch is None
    assert any("ran out" in note for note in result.notes)


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
    with pytest.raises(ValueError, match="one epoch has 0 batch"):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [])
    assert lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [batch] * 2).num_steps == 6  # 3 epochs of 2
    with pytest.raises(ValueError, match="expected a torch.nn.Module"):
        lr_range_test(lambda x: x, nn.MSELoss(), [batch] * 5)
    with pytest.raises(ValueError, match="optimizer is a str"):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [batch] * 5, "adam")
    with pytest.raises(ValueError, match=r"\(inputs, targets\) pairs"):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [torch.zeros(1, 2)] * 5)
