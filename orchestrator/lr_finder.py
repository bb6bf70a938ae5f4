"""The learning-rate range test ("LR finder", L. N. Smith 2017; fastai's ``lr_find``).

Train a throwaway model for at most one epoch while the learning rate climbs from ``min_lr`` to
``max_lr``, record the loss after each step, stop when the loss diverges, and read off an LR where
the loss was still falling fast, well below the LR that broke the training (:func:`suggest`).
The result suggests a learning rate and a narrower range to search it in.

    from orchestrator.lr_finder import lr_range_test, plot_lr_range
    result = lr_range_test(model, nn.CrossEntropyLoss(), batches, {"momentum": 0.9})
    result.suggested_lr, result.bounds
    plot_lr_range(result, "lr_range.png")

or on a study's workload: ``run_lr_range_for_workload("digits_cnn", config, options, seed)``.
The full description, with the suggestion rule and a benchmark, is ``docs/lr_range_test.md``.

How the curve is recorded. The loss of a batch is computed *before* the step that uses that
batch's learning rate, so the first loss that shows the effect of the update with ``lr[i]`` is the
loss of batch ``i + 1``. The result pairs them that way: ``losses[i]`` is the loss measured after
the update with ``lrs[i]``, and a test of ``n`` batches makes ``n - 1`` updates (the last batch is
only measured). fastai pairs batch ``i``'s loss with ``lr[i]``: on its default ramp (100 steps over
eight decades) that reads the curve 0.08 of a decade late, but on a short epoch (23 steps of 64 on
the digits data) one step is 0.38 of a decade and the curve would be read 2.4x too high.

The model is trained, not restored: pass a fresh model (or a copy), and throw it away afterwards.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import asdict, dataclass, field
from os import PathLike
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from orchestrator.training.optimizers import build_optimizer

MODES = ("exponential", "linear")

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

OptimizerSpec = torch.optim.Optimizer | Mapping[str, Any] | Callable[[nn.Module], torch.optim.Optimizer] | None
StepFn = Callable[[nn.Module, Callable[..., Any], Any, torch.optim.Optimizer], Any]


class LRRangeSetupMissing(LookupError):
    """A user workload has no ``<function>_lr_range_setup`` to build the range test from."""


@dataclass
class LRRangeResult:
    """What one range test recorded and what it suggests. All LRs are effective learning rates
    at the batch size of the batches the test was given.

    Curve (one entry per measured update, ``lrs`` increasing):
        lrs: the learning rate of each update.
        losses: the raw loss measured after that update (on the next batch); may end in NaN/inf.
        smoothed_losses: the online EMA of ``losses`` (``smoothing``, bias-corrected); the
            divergence test reads it.
        analysis_losses: the zero-lag smoothed curve the suggestion is computed on (finite points
            up to divergence only; shorter than ``lrs`` when the test diverged).
        initial_loss: the loss of the first batch, before any update.

    Run:
        num_steps: batches consumed (forward passes); never more than one epoch.
        steps_per_epoch: batches in one epoch (None when ``batches`` has no length).
        planned_steps: the batches the ramp was laid out over.
        diverged / stop_reason: whether the test stopped early because the loss diverged (NaN/inf,
            or the online EMA above ``divergence_threshold`` x its best), and why it stopped.
        elapsed_s: wall-clock seconds.

    Suggestion:
        loss_noise: the batch-to-batch noise of the loss (a standard deviation, robust).
        edge_index / divergence_lr: the first point from which the loss stayed clearly above its
            lowest so far, and its LR: where the ramp broke the training (None when the loss never
            rose for good; then ``divergence_lr`` is the LR of a NaN/inf loss, if any).
        min_loss_lr: LR of the lowest point of ``analysis_losses``.
        estimates: ``steep``, ``minimum`` and (for comparison, unused) fastai's ``valley``; None
            when one could not be computed.
        suggested_lr: the lower of ``steep`` and ``minimum`` (None with fewer than 3 points
            before the edge).
        bounds: (low, high), a narrower range to search the LR in (None with no suggestion).
        confident: True when the curve showed both a descent clearly above the noise and the
            edge; only then should ``bounds`` replace a study's declared LR range.
        notes: what to look at (weak descent, no edge, coarse ramp, capped steps...).
        context: where the test ran (workload, seed, configuration), for the record.
    """

    lrs: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    analysis_losses: list[float]
    initial_loss: float
    min_lr: float
    max_lr: float
    mode: str
    smoothing: float
    divergence_threshold: float | None
    num_steps: int
    steps_per_epoch: int | None
    planned_steps: int
    diverged: bool
    stop_reason: str
    divergence_lr: float | None
    min_loss_lr: float | None
    estimates: dict[str, float | None]
    suggested_lr: float | None
    bounds: tuple[float, float] | None
    elapsed_s: float
    loss_noise: float = 0.0
    edge_index: int | None = None
    confident: bool = False
    notes: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction_of_epoch(self) -> float | None:
        """Batches consumed as a fraction of one epoch (None when the epoch length is unknown)."""
        return None if not self.steps_per_epoch else self.num_steps / self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values: non-finite numbers become None, tuples become lists."""
        data = asdict(self)
        data["bounds"] = None if self.bounds is None else list(self.bounds)
        data["fraction_of_epoch"] = self.fraction_of_epoch
        return _json_safe(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LRRangeResult":
        """The inverse of :meth:`to_dict` (None in a loss list reads back as NaN)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("losses", "smoothed_losses", "analysis_losses"):
            values[key] = [math.nan if v is None else float(v) for v in values.get(key, [])]
        if values.get("bounds") is not None:
            values["bounds"] = tuple(values["bounds"])
        if values.get("initial_loss") is None:
            values["initial_loss"] = math.nan
        return cls(**values)


# --------------------------------------------------------------------------------------------
# The ramp


def lr_schedule(min_lr: float, max_lr: float, num_points: int, mode: str = "exponential") -> list[float]:
    """The LR of each of ``num_points`` updates: ``min_lr`` first, ``max_lr`` last; evenly spaced
    in log-LR (``exponential``) or in LR (``linear``)."""
    _check_range(min_lr, max_lr, mode)
    if num_points < 1:
        raise ValueError(f"num_points is {num_points}; expected at least 1")
    if num_points == 1:
        return [float(min_lr)]
    last = num_points - 1
    if mode == "exponential":
        return [float(min_lr * (max_lr / min_lr) ** (i / last)) for i in range(num_points)]
    return [float(min_lr + (max_lr - min_lr) * i / last) for i in range(num_points)]


def lr_range_test(
    model: nn.Module,
    loss_fn: Callable[..., Any],
    batches: Iterable[Any],
    optimizer: OptimizerSpec = None,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int | None = None,
    mode: str = "exponential",
    smoothing: float = 0.98,
    divergence_threshold: float | None = 4.0,
    step_fn: StepFn | None = None,
    device: str | torch.device | None = None,
) -> LRRangeResult:
    """Run the LR range test on ``model`` (which it trains: pass a fresh model or a copy).

    Args:
        model: the network; put in train mode and trained in place.
        loss_fn: ``loss_fn(model(inputs), targets)`` gives the batch loss.
        batches: one epoch of batches, each ``(inputs, targets)`` (a list, a DataLoader...). It is
            iterated once; the test never takes more batches than one pass gives.
        optimizer: an optimizer over ``model``'s parameters; or a configuration mapping for
            :func:`orchestrator.build_optimizer` (``momentum``, ``nesterov``, ``weight_decay``;
            its ``learning_rate`` is ignored); or a factory ``f(model) -> Optimizer``. None: SGD
            with momentum 0.9. Every parameter group follows the ramp.
        min_lr, max_lr: the first and last LR of the ramp (0 < min_lr < max_lr).
        num_steps: batches to use (forward passes; the ramp has ``num_steps - 1`` updates).
            Defaults to, and is capped at, the number of batches in one epoch; required when
            ``batches`` has no length. At least 3.
        mode: ``exponential`` (evenly spaced in log-LR, the usual choice) or ``linear``.
        smoothing: beta of the online exponential moving average of the loss, bias-corrected
            (0 <= smoothing < 1; 0 is no smoothing).
        divergence_threshold: stop when the smoothed loss exceeds this many times the best
            smoothed loss so far (> 1; None: stop on NaN/inf only).
        step_fn: a custom training step ``step_fn(model, loss_fn, batch, optimizer) -> loss``
            that computes the batch's loss, backpropagates and steps the optimizer, returning the
            loss computed before the step. The learning rate is already set in the optimizer's
            param groups; on the last batch it is 0 (that update is never measured). Default: the
            plain step, with the last batch only evaluated.
        device: move the model and each batch's tensors there (default: where the model is).

    Returns:
        An :class:`LRRangeResult` with the curve, the suggested LR and search bounds.

    Raises:
        ValueError: for an argument out of range (named in the message).
    """
    started = time.perf_counter()
    _check_range(min_lr, max_lr, mode)
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise ValueError(f"smoothing is {smoothing!r}; expected an EMA beta in [0, 1), e.g. 0.98 (0: no smoothing)")
    threshold_ok = (
        isinstance(divergence_threshold, (int, float))
        and math.isfinite(divergence_threshold)
        and divergence_threshold > 1
    )
    if divergence_threshold is not None and not threshold_ok:
        raise ValueError(
            f"divergence_threshold is {divergence_threshold!r}; expected a number above 1 (stop when the smoothed "
            "loss exceeds this many times its best), or None to stop on NaN/inf only"
        )
    if not isinstance(model, nn.Module):
        raise ValueError(f"model is a {type(model).__name__}; expected a torch.nn.Module")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn is a {type(loss_fn).__name__}; expected a callable loss_fn(outputs, targets)")

    steps_per_epoch = _length(batches)
    notes: list[str] = []
    if num_steps is not None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 3:
            raise ValueError(f"num_steps is {num_steps!r}; expected an integer of at least 3 (batches to use)")
    elif steps_per_epoch is None:
        raise ValueError("batches has no length; pass num_steps (at most the batches in one epoch)")
    if steps_per_epoch is not None:
        if steps_per_epoch < 3:
            raise ValueError(
                f"one epoch has {steps_per_epoch} batch(es); the range test needs at least 3 (use a smaller batch size)"
            )
        if num_steps is not None and num_steps > steps_per_epoch:
            notes.append(f"num_steps {num_steps} capped at one epoch ({steps_per_epoch} batches)")
        planned = steps_per_epoch if num_steps is None else min(num_steps, steps_per_epoch)
    else:
        planned = int(num_steps)  # type: ignore[arg-type]

    if device is not None:
        model.to(device)
    target_device = device if device is not None else _model_device(model)
    opt = _make_optimizer(optimizer, model)
    schedule = lr_schedule(min_lr, max_lr, planned - 1, mode)
    model.train()

    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    initial_loss = math.nan
    avg = 0.0
    best = math.inf
    diverged = False
    stop_reason = "completed the ramp"
    consumed = 0
    for index, batch in enumerate(batches):
        if index >= planned:
            break
        batch = _to_device(batch, target_device)
        last = index == planned - 1
        lr = 0.0 if last else schedule[index]
        for group in opt.param_groups:
            group["lr"] = lr
        if step_fn is not None:
            loss = _as_float(step_fn(model, loss_fn, batch, opt))
        elif last:
            with torch.no_grad():
                loss = _as_float(_batch_loss(model, loss_fn, batch))
        else:
            loss = _default_step(model, loss_fn, batch, opt)
        consumed += 1
        if index == 0:
            initial_loss = loss
            if not math.isfinite(loss):
                diverged, stop_reason = True, f"the loss of the first batch, before any update, is {loss}"
                break
            continue
        # This loss is the first to show the update made with the previous batch's LR.
        lrs.append(schedule[index - 1])
        losses.append(loss)
        if not math.isfinite(loss):
            smoothed.append(math.nan)
            diverged, stop_reason = True, f"the loss became {loss}"
            break
        avg = smoothing * avg + (1 - smoothing) * loss
        value = avg / (1 - smoothing ** len(losses)) if smoothing > 0 else loss
        smoothed.append(value)
        if divergence_threshold is not None and len(smoothed) > 1 and best > 0 and value > divergence_threshold * best:
            diverged = True
            stop_reason = f"the smoothed loss {value:.4g} exceeded {divergence_threshold:g} x its best {best:.4g}"
            break
        best = min(best, value)
    if consumed < planned and not diverged:
        stop_reason = f"batches ran out after {consumed} of {planned}"
        notes.append(stop_reason)

    result = LRRangeResult(
        lrs=lrs,
        losses=losses,
        smoothed_losses=smoothed,
        analysis_losses=[],
        initial_loss=initial_loss,
        min_lr=float(min_lr),
        max_lr=float(max_lr),
        mode=mode,
        smoothing=float(smoothing),
        divergence_threshold=None if divergence_threshold is None else float(divergence_threshold),
        num_steps=consumed,
        steps_per_epoch=steps_per_epoch,
        planned_steps=planned,
        diverged=diverged,
        stop_reason=stop_reason,
        divergence_lr=lrs[-1] if diverged and lrs else None,
        min_loss_lr=None,
        estimates={},
        suggested_lr=None,
        bounds=None,
        elapsed_s=0.0,
        notes=notes,
    )
    suggest(result)
    result.elapsed_s = time.perf_counter() - started
    return result


def _default_step(model: nn.Module, loss_fn: Callable[..., Any], batch: Any, opt: torch.optim.Optimizer) -> float:
    opt.zero_grad(set_to_none=True)
    loss = _batch_loss(model, loss_fn, batch)
    value = _as_float(loss)
    if not math.isfinite(value):
        return value  # no step on a NaN/inf loss: the test stops here anyway
    loss.backward()
    opt.step()
    return value


def _batch_loss(model: nn.Module, loss_fn: Callable[..., Any], batch: Any) -> torch.Tensor:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(
            f"a batch is a {type(batch).__name__}; the default step expects (inputs, targets) pairs "
            "(pass step_fn for other batch layouts)"
        )
    inputs, targets = batch
    return loss_fn(model(inputs), targets)


def _make_optimizer(spec: OptimizerSpec, model: nn.Module) -> torch.optim.Optimizer:
    if spec is None:
        return build_optimizer({}, model)
    if isinstance(spec, torch.optim.Optimizer):
        return spec
    if isinstance(spec, Mapping):
        return build_optimizer(spec, model)
    if callable(spec):
        opt = spec(model)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(f"the optimizer factory returned a {type(opt).__name__}; expected a torch.optim.Optimizer")
        return opt
    raise ValueError(
        f"optimizer is a {type(spec).__name__}; expected a torch.optim.Optimizer, a configuration mapping "
        "for build_optimizer, a factory f(model) -> Optimizer, or None"
    )


def _check_range(min_lr: Any, max_lr: Any, mode: Any) -> None:
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} is {value!r}; expected a finite learning rate above 0")
    if min_lr >= max_lr:
        raise ValueError(f"min_lr {min_lr!r} is not below max_lr {max_lr!r}; the ramp goes from min_lr up to max_lr")
    if mode not in MODES:
        raise ValueError(f"mode is {mode!r}; expected one of {', '.join(MODES)}")


def _length(batches: Iterable[Any]) -> int | None:
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        return None


def _model_device(model: nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    return None


def _to_device(batch: Any, device: Any) -> Any:
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(item, device) for item in batch)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch


def _as_float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


# --------------------------------------------------------------------------------------------
# The suggestion


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
    7. ``bounds``: from ``suggested / 10`` up to ``min_loss_lr``, kept within 3x to 10x the
       suggestion and below the edge.
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
    if count < 3:
        notes.append(
            f"suggestion: none, only {count} point(s) before the loss diverged; lower min_lr, or use more batches"
        )
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
    result.suggested_lr = suggested
    high = min(max(lrs[i_min], HIGH_MIN_FACTOR * suggested), HIGH_MAX_FACTOR * suggested)
    if result.divergence_lr is not None:
        high = min(high, result.divergence_lr)
    low = max(suggested / LOW_FACTOR, min(result.lrs[0], suggested))
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
    weak = any(n.startswith("suggestion: weak") for n in notes)
    if edge is None and not result.diverged:
        notes.append("suggestion: the loss never rose for good; raise max_lr to see where training breaks")
    if len(result.lrs) > 1:
        step = (result.lrs[1] / result.lrs[0]) if result.mode == "exponential" else None
        if step is not None and step > COARSE_STEP:
            notes.append(
                f"suggestion: coarse, consecutive LRs differ by {step:.2g}x ({len(result.lrs)} updates over "
                f"{math.log10(result.max_lr / result.min_lr):.2g} decades); a narrower [min_lr, max_lr], such as the "
                "study's LR search range, gives a finer ramp"
            )
    result.confident = not weak and (edge is not None or result.diverged)
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


# --------------------------------------------------------------------------------------------
# The plot


def plot_lr_range(result: LRRangeResult, path: str | PathLike[str], *, title: str | None = None) -> str:
    """Loss against LR (log axis): raw, online-smoothed and zero-lag-smoothed curves, the
    suggestion, the search bounds and the divergence point. Saved as PNG; returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib comes with mlflow
        raise RuntimeError("plot_lr_range needs matplotlib (pip install matplotlib)") from exc
    path = str(path)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        finite = [(lr, loss) for lr, loss in zip(result.lrs, result.losses) if math.isfinite(loss)]
        if finite:
            ax.plot(*zip(*finite), color="0.6", lw=1, marker=".", ms=3, label="loss (raw)")
        online = [(lr, v) for lr, v in zip(result.lrs, result.smoothed_losses) if math.isfinite(v)]
        if online:
            ax.plot(*zip(*online), color="tab:orange", lw=1, ls="--", label=f"online EMA (beta {result.smoothing:g})")
        if result.analysis_losses:
            ax.plot(result.lrs[: len(result.analysis_losses)], result.analysis_losses, color="tab:blue", lw=2,
                    label="smoothed (zero lag)")
        if result.bounds is not None:
            ax.axvspan(*result.bounds, color="tab:green", alpha=0.12, label="suggested search range")
        if result.suggested_lr is not None:
            ax.axvline(result.suggested_lr, color="tab:green", lw=2, label=f"suggested lr {result.suggested_lr:.3g}")
        if result.divergence_lr is not None:
            ax.axvline(result.divergence_lr, color="tab:red", lw=1, ls=":",
                       label=f"loss rose for good at {result.divergence_lr:.3g}")
        ax.set_xscale("log")
        kept = len(result.analysis_losses)
        reference = [v for v in list(result.analysis_losses) + list(result.losses[:kept]) if math.isfinite(v)]
        if math.isfinite(result.initial_loss):
            reference.append(result.initial_loss)
        if reference:
            low, high = min(reference), max(reference)
            span = max(high - low, 1e-12)
            ax.set_ylim(low - 0.1 * span, high + 0.5 * span)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(title or f"LR range test: {result.num_steps} batches, {result.stop_reason}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# On a study's workload

SETUP_SUFFIX = "_lr_range_setup"

_BUILTIN_SETUPS = {
    "digits_mlp": "orchestrator.workloads.digits_lr_range:digits_mlp_lr_range_setup",
    "digits_cnn": "orchestrator.workloads.digits_lr_range:digits_cnn_lr_range_setup",
}


def resolve_lr_range_setup(workload_name: str) -> Callable[..., Any]:
    """The setup function for ``workload_name``: the built-in one for ``digits_mlp`` and
    ``digits_cnn``; for ``package.module:function``, ``package.module:function_lr_range_setup``.

    Raises:
        ValueError: the name is neither a built-in nor ``package.module:function``.
        LRRangeSetupMissing: the module has no such setup function.
    """
    if workload_name in _BUILTIN_SETUPS:
        module_name, _, attr = _BUILTIN_SETUPS[workload_name].partition(":")
        return getattr(importlib.import_module(module_name), attr)
    module_name, sep, fn_name = workload_name.partition(":")
    if not sep or not module_name or not fn_name:
        raise ValueError(
            f"workload {workload_name!r} is neither a built-in ({', '.join(sorted(_BUILTIN_SETUPS))}) "
            "nor package.module:function"
        )
    module = importlib.import_module(module_name)
    setup_name = fn_name + SETUP_SUFFIX
    setup = getattr(module, setup_name, None)
    if not callable(setup):
        raise LRRangeSetupMissing(
            f"workload {workload_name!r} has no LR range test setup: define {setup_name}(config, options, seed) "
            f"-> (model, loss_fn, batches) in module {module_name!r}, returning a fresh model, its loss function "
            "and one epoch of (inputs, targets) batches at config['batch_size'] (see docs/lr_range_test.md)"
        )
    return setup


def run_lr_range_for_workload(
    workload_name: str,
    config: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    **ramp_kwargs: Any,
) -> LRRangeResult:
    """Run the range test on a study's workload.

    ``config`` is one configuration of the study (its ``batch_size``, ``momentum``, ``nesterov``,
    ``weight_decay``...; its ``learning_rate`` is ignored), ``options`` the study's
    ``workload_options``, ``seed`` the seed the setup draws the model and batch order from.
    ``ramp_kwargs`` go to :func:`lr_range_test` (``min_lr``, ``max_lr``, ``num_steps``, ``mode``,
    ``smoothing``, ``divergence_threshold``, ``step_fn``, ``device``, ``optimizer``).

    The setup (see :func:`resolve_lr_range_setup`) returns ``(model, loss_fn, batches)`` or
    ``(model, loss_fn, batches, optimizer)``; without an optimizer from the setup or in
    ``ramp_kwargs``, :func:`orchestrator.build_optimizer` builds it from ``config``.
    """
    setup = resolve_lr_range_setup(workload_name)
    options = dict(options or {})
    config = dict(config)
    torch.manual_seed(int(seed))
    built = setup(config, options, int(seed))
    if not isinstance(built, (tuple, list)) or len(built) not in (3, 4):
        raise ValueError(
            f"{workload_name} LR range setup returned {type(built).__name__}; expected (model, loss_fn, batches) "
            "or (model, loss_fn, batches, optimizer)"
        )
    model, loss_fn, batches = built[:3]
    optimizer = ramp_kwargs.pop("optimizer", built[3] if len(built) == 4 else None)
    if optimizer is None:
        optimizer = config
    result = lr_range_test(model, loss_fn, batches, optimizer, **ramp_kwargs)
    result.context.update({
        "workload": workload_name,
        "seed": int(seed),
        "config": {k: v for k, v in config.items() if k != "learning_rate"},
    })
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return str(value)
