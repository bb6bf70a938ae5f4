"""The suggestion rule of the LR range test: from a recorded curve, an LR where the loss was still
falling fast, a narrower range to search, and whether to trust them (``docs/lr_range_test.md``)."""

from __future__ import annotations

import math
from typing import Sequence

from orchestrator.lr_range.result import LRRangeResult, epochs_of

#: The suggestion ignores this fraction of the recorded points at the start of the curve (where
#: momentum is still building up and a first-batch spike would look like a steep descent).
SKIP_START = 0.1
#: The analysis curve first goes through a running median this wide on each side: spikes of up
#: to this many consecutive points vanish, monotone stretches (the descent, the edge) stay.
MEDIAN_HALF_WIDTH = 2
#: The analysis smoother's window (1 / (1 - beta) points) is at most this fraction of the curve.
ANALYSIS_WINDOW_FRACTION = 0.1
#: The ``minimum`` estimate: the LR of the lowest (smoothed) loss divided by this.
MINIMUM_DIVISOR = 10.0
#: The suggested search range: ``suggested / LOW_FACTOR`` up to the LR of the lowest loss, kept
#: between ``HIGH_MIN_FACTOR`` and ``HIGH_MAX_FACTOR`` times the suggestion (and below divergence).
LOW_FACTOR = 10.0
HIGH_MIN_FACTOR = 3.0
HIGH_MAX_FACTOR = 10.0
#: The edge: the loss stays above its lowest so far by more than this many noise standard
#: deviations (and by ``RISE_RELATIVE`` of it) from there to the end of the curve.
RISE_NOISE = 5.0
RISE_RELATIVE = 0.005
#: A curve whose smoothed loss falls by less than this fraction of its start (or less than the
#: noise) before its minimum gets a note that the suggestion is weak.
WEAK_DESCENT = 0.01
#: A ramp whose consecutive LRs differ by more than this factor gets a note that it is coarse.
COARSE_STEP = 2.0
#: A ramp laid out over fewer steps than this is too coarse to trust: never confident.
MIN_STEPS = 30


def suggest(result: LRRangeResult) -> LRRangeResult:
    """(Re)compute ``result``'s suggestion from its recorded curve, in place; returns it.

    The rule (``docs/lr_range_test.md`` explains why):

    1. Keep the finite points. Estimate the batch-to-batch noise of the loss, robustly, from the
       median absolute difference of consecutive losses.
    2. Find the edge: the first point from which the loss stays, to the end of the curve, above
       the lowest loss before it by more than ``RISE_NOISE`` x the noise (and 0.5% of it). That
       is where the ramp broke the training: the loss rose and never came back. A spike the loss
       recovers from is not an edge; neither is noise. Only the points before the edge count.
    3. Smooth them without lag and without letting spikes through: a running median over 5
       points (spikes of up to 2 points vanish, monotone stretches stay), then the EMA run
       forward and backward, its window ``1 / (1 - beta)`` capped at a tenth of the points.
    4. ``min_loss_lr``: the LR of the lowest smoothed loss; ``minimum`` = ``min_loss_lr / 10``.
    5. ``steep``: the LR where the loss makes new lows fastest: the steepest descent, against
       log10(LR), of the running minimum of the smoothed curve, between the first 10% of the
       points (momentum warm-up) and the minimum. A bump the loss falls back from makes no new
       low, so it cannot pose as the steepest descent.
    6. ``suggested_lr`` = the lower of ``steep`` and ``minimum``: an LR where the loss was still
       falling fast, and at least ten times below the LR that gave the lowest loss.
       (``valley``, fastai's rule, is reported for comparison but not used: on a noisy plateau
       its longest decreasing run starts anywhere on the plateau.)
       It is never below the ramp's first LR: when it would be (the loss was lowest within a
       decade of ``min_lr``), it is that LR, with a note, and not confident.
    7. ``bounds``: from ``suggested / 10`` up to ``min_loss_lr``, kept within 3x to 10x the
       suggestion, below the edge, and within the LRs the ramp ran.
    8. ``confident`` needs a ramp of at least ``MIN_STEPS`` steps, a clear descent, the edge, and
       no clipping; ``confidence_reason`` says why not.
    """
    notes = [n for n in result.notes if not n.startswith("suggestion:")]
    finite = 0
    while finite < len(result.losses) and math.isfinite(result.losses[finite]):
        finite += 1
    raw = list(result.losses[:finite])
    noise = loss_noise(raw)
    edge = find_edge(raw, noise)
    count = finite if edge is None else edge
    lrs = result.lrs[:count]
    result.loss_noise = noise
    result.edge_index = edge
    if edge is not None:
        result.divergence_lr = result.lrs[edge]
    elif result.diverged and result.lrs:
        result.divergence_lr = result.lrs[min(finite, len(result.lrs) - 1)]
    else:
        result.divergence_lr = None
    result.analysis_losses = zero_lag_smooth(running_median(raw[:count], MEDIAN_HALF_WIDTH), result.smoothing)
    result.estimates = {"steep": None, "valley": None, "minimum": None}
    result.min_loss_lr = result.suggested_lr = None
    result.bounds = None
    result.confident = False
    result.confidence_reason = "no suggestion"
    if count < 3:
        where = "before the loss diverged; lower min_lr" if edge is not None or result.diverged else "on the curve"
        notes.append(f"suggestion: none, only {count} point(s) {where}, or use more batches")
        result.notes = notes
        return result
    curve = result.analysis_losses
    log_lrs = [math.log10(lr) for lr in lrs]
    i_min = min(range(count), key=lambda i: curve[i])
    result.min_loss_lr = lrs[i_min]
    start = min(int(math.ceil(SKIP_START * count)), i_min)
    estimates: dict[str, float | None] = {"steep": None, "valley": None, "minimum": lrs[i_min] / MINIMUM_DIVISOR}
    if i_min - start >= 1:
        envelope, low_so_far = [], math.inf
        for value in curve[start : i_min + 1]:
            low_so_far = min(low_so_far, value)
            envelope.append(low_so_far)
        slopes = _slopes(log_lrs[start : i_min + 1], envelope)
        i_steep = min(range(len(slopes)), key=lambda i: slopes[i])
        if slopes[i_steep] < 0:
            estimates["steep"] = lrs[start + i_steep]
        first, last = _longest_decrease(curve, start, i_min)
        if last > first:
            estimates["valley"] = lrs[first + (last - first) // 2]
    result.estimates = estimates
    suggested = min(v for k, v in estimates.items() if v is not None and k != "valley")
    reasons = []
    if result.planned_steps < MIN_STEPS:
        notes.append(
            f"suggestion: not confident, the ramp had only {result.planned_steps} steps ({epochs_of(result.planned_steps, result.steps_per_epoch)}); a curve "
            f"of under {MIN_STEPS} steps is too coarse to trust: a smaller batch size gives more steps per epoch"
        )
        reasons.append(f"only {result.planned_steps} steps, under {MIN_STEPS}")
    ramp_low, ramp_high = result.lrs[0], result.lrs[-1]
    if suggested < ramp_low:
        notes.append(
            f"suggestion: clipped to the ramp's first LR {ramp_low:.3g}: the loss was lowest at {lrs[i_min]:.3g}, "
            f"within a decade of it, so the rule's {suggested:.3g} lies below the ramp; lower min_lr (--min-lr) "
            "to see the descent"
        )
        reasons.append("the loss was lowest at the ramp's start")
        suggested = ramp_low
    result.suggested_lr = suggested
    high = min(max(lrs[i_min], HIGH_MIN_FACTOR * suggested), HIGH_MAX_FACTOR * suggested, ramp_high)
    if result.divergence_lr is not None:
        high = min(high, result.divergence_lr)
    low = max(suggested / LOW_FACTOR, ramp_low)
    result.bounds = (low, max(high, suggested))

    descent = curve[start] - curve[i_min]
    # the smoothed curve's noise is about noise / sqrt(window); a descent within RISE_NOISE of
    # those standard errors, or under WEAK_DESCENT of the loss, is not a clear descent
    smoothed_noise = noise / math.sqrt(max(1.0, ANALYSIS_WINDOW_FRACTION * count))
    if i_min == start or descent < max(RISE_NOISE * smoothed_noise, WEAK_DESCENT * abs(curve[start])):
        notes.append(
            f"suggestion: weak, the smoothed loss fell by only {max(descent, 0.0):.3g} "
            f"({max(descent, 0.0) / abs(curve[start] or 1):.1%}) before its minimum, about the batch-to-batch noise "
            f"({noise:.2g}); the ramp may be too short or its range too low"
        )
    if any(n.startswith("suggestion: weak") for n in notes):
        reasons.append("the loss barely fell before its minimum")
    if edge is None and not result.diverged:
        notes.append("suggestion: the loss never rose for good; raise max_lr to see where training breaks")
        reasons.append("the loss never rose for good: raise max_lr")
    if len(result.lrs) > 1:
        step = (result.lrs[1] / result.lrs[0]) if result.mode == "exponential" else None
        if step is not None and step > COARSE_STEP:
            notes.append(
                f"suggestion: coarse, consecutive LRs differ by {step:.2g}x ({len(result.lrs)} updates over "
                f"{math.log10(result.max_lr / result.min_lr):.2g} decades); a narrower [min_lr, max_lr], such as the "
                "study's LR search range, gives a finer ramp"
            )
    result.confident = not reasons
    result.confidence_reason = "; ".join(reasons) or "a clear descent, then the loss rose for good"
    result.notes = notes
    return result


def loss_noise(losses: Sequence[float]) -> float:
    """The batch-to-batch noise of the loss (a standard deviation), from the median absolute
    difference of consecutive losses (robust to the few jumps at a spike or the edge)."""
    diffs = sorted(abs(b - a) for a, b in zip(losses, losses[1:]))
    if not diffs:
        return 0.0
    mid = len(diffs) // 2
    median = diffs[mid] if len(diffs) % 2 else (diffs[mid - 1] + diffs[mid]) / 2
    return median / 0.9539  # the median of |x - y| for x, y ~ N(0, s^2) is 0.9539 s


def find_edge(losses: Sequence[float], noise: float) -> int | None:
    """The first index from which every loss stays above the lowest loss before it by more than
    ``max(RISE_NOISE * noise, RISE_RELATIVE * |lowest|)``; None when the loss never rose for good."""
    n = len(losses)
    if n < 2:
        return None
    suffix_min = [0.0] * n
    low = math.inf
    for i in range(n - 1, -1, -1):
        low = min(low, losses[i])
        suffix_min[i] = low
    prefix_min = losses[0]
    for i in range(1, n):
        margin = max(RISE_NOISE * noise, RISE_RELATIVE * abs(prefix_min))
        if suffix_min[i] > prefix_min + margin:
            return i
        prefix_min = min(prefix_min, losses[i])
    return None


def running_median(values: Sequence[float], half_width: int) -> list[float]:
    """Each value replaced by the median of the ``2 * half_width + 1`` values around it (the window
    shrinks symmetrically at the ends, so the end points stay). It removes spikes of up to
    ``half_width`` consecutive points and keeps monotone stretches, however steep, unchanged."""
    n = len(values)
    out = []
    for i in range(n):
        k = min(half_width, i, n - 1 - i)
        window = sorted(values[i - k : i + k + 1])
        out.append(float(window[len(window) // 2]))
    return out


def zero_lag_smooth(values: Sequence[float], beta: float) -> list[float]:
    """The bias-corrected EMA run forward, then backward over the result: no lag (a symmetric
    kernel). Its window ``1 / (1 - beta)`` is capped at ``ANALYSIS_WINDOW_FRACTION`` of the points
    (at least one point: no smoothing)."""
    n = len(values)
    if n == 0:
        return []
    window = max(1.0, ANALYSIS_WINDOW_FRACTION * n)
    b = min(beta, 1.0 - 1.0 / window)
    if b <= 0:
        return [float(v) for v in values]
    forward = _ema(values, b)
    return _ema(forward[::-1], b)[::-1]


def _ema(values: Sequence[float], beta: float) -> list[float]:
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta**i))
    return out


def _slopes(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """dy/dx at each point: central differences inside, one-sided at the ends."""
    n = len(y)
    out = []
    for i in range(n):
        lo, hi = max(0, i - 1), min(n - 1, i + 1)
        out.append((y[hi] - y[lo]) / (x[hi] - x[lo]) if x[hi] != x[lo] else 0.0)
    return out


def _longest_decrease(values: Sequence[float], start: int, end: int) -> tuple[int, int]:
    """First and last index of the longest strictly decreasing subsequence of
    values[start:end+1] (fastai's valley), ties to the earliest."""
    length = {start: 1}
    origin = {start: start}
    best_end = start
    for i in range(start + 1, end + 1):
        length[i], origin[i] = 1, i
        for j in range(start, i):
            if values[i] < values[j] and length[j] + 1 > length[i]:
                length[i], origin[i] = length[j] + 1, origin[j]
        if length[i] > length[best_end]:
            best_end = i
    return origin[best_end], best_end
