"""The LR range test's suggestion rule, on synthetic curves with known answers: the steep point
and the minimum, robust to early spikes, weak on a flat curve, and rerun from a saved result."""

from __future__ import annotations

import json
import math

import pytest

from orchestrator.lr_range.result import LRRangeResult
from orchestrator.lr_range.suggest import suggest
from tests.unit.lr_range.curves import synthetic, valley


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


@pytest.mark.parametrize(
    ("curve", "min_lr", "max_lr"),
    [
        (lambda lr: 2.3 + lr, 0.1, 100.0),  # rises from the start: lowest at the ramp's first LR
        (lambda lr: 2.3 + lr, 1e-3, 1e-2),  # the same on a short range
        (lambda lr: 2.3 - 0.3 * math.log10(lr), 1e-4, 1.0),  # falls to the end: the high bound at max_lr
        (valley, 1e-6, 10.0),
        (valley, 3e-3, 1.0),  # starts mid-descent
    ],
)
def test_the_suggestion_and_bounds_lie_within_the_ramp(curve, min_lr, max_lr):
    result, _ = synthetic(curve, steps=100, noise=0.005, min_lr=min_lr, max_lr=max_lr)
    low, high = result.bounds
    assert min_lr <= low <= result.suggested_lr <= high <= max_lr
    assert low >= result.lrs[0] and high <= result.lrs[-1]


def test_a_suggestion_below_the_ramp_is_clipped_to_its_start_and_not_confident():
    result, _ = synthetic(lambda lr: 2.3 + lr, steps=100, noise=0.005, min_lr=0.1, max_lr=100.0)
    assert result.min_loss_lr < 1.0  # the rule's minimum/10 is below 0.1, the ramp's start
    assert result.suggested_lr == pytest.approx(0.1) and result.bounds[0] == pytest.approx(0.1)
    assert not result.confident and "the loss was lowest at the ramp's start" in result.confidence_reason
    assert any(n.startswith("suggestion: clipped to the ramp's first LR 0.1") and "--min-lr" in n for n in result.notes)


def test_a_ramp_of_under_30_steps_is_never_confident():
    short, _ = synthetic(steps=25, noise=0.005, min_lr=1e-4, max_lr=10.0)
    assert short.suggested_lr is not None and not short.confident
    assert short.confidence_reason.startswith("only 25 steps, under 30")
    assert any("the ramp had only 25 steps (1 epoch of 25 batches)" in n for n in short.notes)
    enough, _ = synthetic(steps=30, noise=0.005, min_lr=1e-4, max_lr=10.0)
    assert enough.confident and enough.confidence_reason == "a clear descent, then the loss rose for good"
