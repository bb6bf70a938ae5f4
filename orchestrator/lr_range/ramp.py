"""The learning-rate range test ("LR finder", L. N. Smith 2017; fastai's ``lr_find``).

Train a throwaway model for ``DEFAULT_STEPS`` steps (a longer epoch whole; a shorter one
re-iterated, up to ``MAX_EPOCHS`` epochs) while the learning rate climbs from ``min_lr`` to
``max_lr``, record the loss after each step, stop when the loss diverges, and read off an LR where
the loss was still falling fast, well below the LR that broke the training (:func:`suggest`).
The result suggests a learning rate and a narrower range to search it in.

    from orchestrator.lr_range import lr_range_test, plot_lr_range
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

import math
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from orchestrator.errors import LRRangeError
from orchestrator.lr_range.result import LRRangeResult, epochs_of
from orchestrator.lr_range.suggest import suggest
from orchestrator.training.optimizers import build_optimizer

MODES = ("exponential", "linear")
#: The ramp's default length in steps (fastai's; Smith ran it over a few epochs). An epoch with
#: more batches is used whole.
DEFAULT_STEPS = 100
#: The ramp re-iterates the batches for at most this many epochs (the default and the cap).
MAX_EPOCHS = 3

OptimizerSpec = torch.optim.Optimizer | Mapping[str, Any] | Callable[[nn.Module], torch.optim.Optimizer] | None
StepFn = Callable[[nn.Module, Callable[..., Any], Any, torch.optim.Optimizer], Any]


def lr_schedule(min_lr: float, max_lr: float, num_points: int, mode: str = "exponential") -> list[float]:
    """The LR of each of ``num_points`` updates: ``min_lr`` first, ``max_lr`` last; evenly spaced
    in log-LR (``exponential``) or in LR (``linear``)."""
    _check_range(min_lr, max_lr, mode)
    if num_points < 1:
        raise LRRangeError(f"num_points is {num_points}; expected at least 1")
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
    progress: Callable[[str], None] | None = None,
) -> LRRangeResult:
    """Run the LR range test on ``model`` (which it trains: pass a fresh model or a copy).

    Args:
        model: the network; put in train mode and trained in place.
        loss_fn: ``loss_fn(model(inputs), targets)`` gives the batch loss.
        batches: one epoch of batches, each ``(inputs, targets)`` (a list, a DataLoader...). It is
            iterated again when the ramp needs more steps, at most ``MAX_EPOCHS`` times.
        optimizer: an optimizer over ``model``'s parameters; or a configuration mapping for
            :func:`orchestrator.build_optimizer` (``momentum``, ``nesterov``, ``weight_decay``;
            its ``learning_rate`` is ignored); or a factory ``f(model) -> Optimizer``. None: SGD
            with momentum 0.9. Every parameter group follows the ramp.
        min_lr, max_lr: the first and last LR of the ramp (0 < min_lr < max_lr).
        num_steps: batches to use (forward passes; the ramp has ``num_steps - 1`` updates).
            Default: one epoch, or ``DEFAULT_STEPS`` when one epoch is shorter, but at most
            ``MAX_EPOCHS`` epochs (also the cap). Required when ``batches`` has no length. At least 3.
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
        progress: called once with a line saying what the test ramps, over how many steps and
            epochs, before the first step.

    Returns:
        An :class:`LRRangeResult` with the curve, the suggested LR and search bounds.

    Raises:
        ValueError: for an argument out of range (named in the message).
    """
    started = time.perf_counter()
    _check_range(min_lr, max_lr, mode)
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise LRRangeError(f"smoothing is {smoothing!r}; expected an EMA beta in [0, 1), e.g. 0.98 (0: no smoothing)")
    threshold_ok = (
        isinstance(divergence_threshold, (int, float))
        and math.isfinite(divergence_threshold)
        and divergence_threshold > 1
    )
    if divergence_threshold is not None and not threshold_ok:
        raise LRRangeError(
            f"divergence_threshold is {divergence_threshold!r}; expected a number above 1 (stop when the smoothed "
            "loss exceeds this many times its best), or None to stop on NaN/inf only"
        )
    if not isinstance(model, nn.Module):
        raise LRRangeError(f"model is a {type(model).__name__}; expected a torch.nn.Module")
    if not callable(loss_fn):
        raise LRRangeError(f"loss_fn is a {type(loss_fn).__name__}; expected a callable loss_fn(outputs, targets)")

    steps_per_epoch = _length(batches)
    notes: list[str] = []
    if num_steps is not None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 3:
            raise LRRangeError(f"num_steps is {num_steps!r}; expected an integer of at least 3 (batches to use)")
    elif steps_per_epoch is None:
        raise LRRangeError("batches has no length; pass num_steps (at most the batches in one epoch)")
    if steps_per_epoch is not None:
        available = MAX_EPOCHS * steps_per_epoch
        if available < 3:
            raise LRRangeError(
                f"one epoch has {steps_per_epoch} batch(es); the range test needs at least 3 steps over "
                f"{MAX_EPOCHS} epochs (use a smaller batch size)"
            )
        if num_steps is not None and num_steps > available:
            notes.append(f"num_steps {num_steps} capped at {MAX_EPOCHS} epochs ({available} batches)")
        wanted = max(DEFAULT_STEPS, steps_per_epoch) if num_steps is None else num_steps
        planned = min(wanted, available)
    else:
        planned = int(num_steps)  # type: ignore[arg-type]
    if progress is not None:
        progress(_plan_line(min_lr, max_lr, mode, planned, steps_per_epoch))

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
    for index, batch in enumerate(_epochs(batches, MAX_EPOCHS)):
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


def _plan_line(min_lr: float, max_lr: float, mode: str, planned: int, steps_per_epoch: int | None) -> str:
    return (f"ramping the learning rate {min_lr:.3g} -> {max_lr:.3g} ({mode}) over {planned} steps, "
            f"{epochs_of(planned, steps_per_epoch)}")


def _epochs(batches: Iterable[Any], epochs: int) -> Iterator[Any]:
    """The batches, iterated up to ``epochs`` times (an iterator ends after its one pass)."""
    for _ in range(epochs):
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            return


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
        raise LRRangeError(
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
            raise LRRangeError(f"the optimizer factory returned a {type(opt).__name__}; expected a torch.optim.Optimizer")
        return opt
    raise LRRangeError(
        f"optimizer is a {type(spec).__name__}; expected a torch.optim.Optimizer, a configuration mapping "
        "for build_optimizer, a factory f(model) -> Optimizer, or None"
    )


def _check_range(min_lr: Any, max_lr: Any, mode: Any) -> None:
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise LRRangeError(f"{name} is {value!r}; expected a finite learning rate above 0")
    if min_lr >= max_lr:
        raise LRRangeError(f"min_lr {min_lr!r} is not below max_lr {max_lr!r}; the ramp goes from min_lr up to max_lr")
    if mode not in MODES:
        raise LRRangeError(f"mode is {mode!r}; expected one of {', '.join(MODES)}")


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
