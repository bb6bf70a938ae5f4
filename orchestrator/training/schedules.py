"""Learning-rate schedules from a trial's configuration, stepped at the right granularity.

``config["schedule"]`` picks one of :data:`SCHEDULES` (``constant`` by default). The returned
:class:`LRSchedule` wraps a ``torch.optim.lr_scheduler`` scheduler; the training loop calls
``step_batch()`` after every optimizer step and ``step_epoch(val_loss)`` at every epoch's end, and
each call steps the scheduler only when that is its granularity.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CyclicLR,
    ExponentialLR,
    LambdaLR,
    LRScheduler,
    OneCycleLR,
    ReduceLROnPlateau,
    StepLR,
)

from orchestrator.errors import TrialConfigError
from orchestrator.training.optimizers import config_number

SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine", "onecycle", "cyclic", "plateau")
DEFAULT_SCHEDULE = "constant"
MOMENTUM_SPAN = 0.1  # cycled momentum runs from the optimizer's momentum (or beta1) down by this much

Granularity = Literal["batch", "epoch", "none"]


@dataclass
class LRSchedule:
    """A torch LR scheduler and the granularity it steps at.

    ``total_steps`` is the planned number of batches of a batch schedule with an end: the scheduler
    is stepped at most ``total_steps - 1`` times, so the last planned batch's LR holds from then on.
    """

    name: str
    optimizer: Optimizer
    scheduler: LRScheduler | ReduceLROnPlateau | None = None
    granularity: Granularity = "none"
    total_steps: int | None = None
    batches: int = 0

    @property
    def lr(self) -> float:
        """The current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step_batch(self) -> None:
        """Call after every ``optimizer.step()``: steps batch-granular schedules."""
        if self.granularity != "batch" or self.scheduler is None:
            return
        if self.total_steps is not None and self.batches >= self.total_steps - 1:
            return
        self.batches += 1
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state and the batch count, for a trial checkpoint."""
        return {"batches": self.batches, "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (the optimizer's LRs come with its own state)."""
        self.batches = int(state["batches"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def step_epoch(self, val_loss: float | None = None) -> None:
        """Call at every epoch's end: steps epoch-granular schedules (``plateau`` needs ``val_loss``)."""
        if self.granularity != "epoch" or self.scheduler is None:
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            if val_loss is None:
                raise TrialConfigError("the plateau schedule needs the epoch's validation loss: step_epoch(val_loss)")
            self.scheduler.step(float(val_loss))
        else:
            self.scheduler.step()


def build_scheduler(
    config: Mapping[str, Any], optimizer: Optimizer, steps_per_epoch: int, epochs: int | None = None
) -> LRSchedule:
    """The schedule ``config["schedule"]`` names (default ``constant``) for ``optimizer``.

    ``steps_per_epoch`` is the number of optimizer steps per epoch; ``epochs`` the trial's total
    (default ``config["max_epochs"]``), needed by ``cosine``, ``warmup_cosine`` and ``onecycle``.
    The LR each schedule starts from is each parameter group's own, so per-layer rates keep their
    ratios. Raises ``ValueError`` on an unknown name or a bad parameter.
    """
    name = config.get("schedule", DEFAULT_SCHEDULE)
    if name not in SCHEDULES:
        raise TrialConfigError(f"config['schedule'] is {name!r}; expected one of {', '.join(SCHEDULES)}")
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, numbers.Integral) or steps_per_epoch < 1:
        raise TrialConfigError(f"steps_per_epoch is {steps_per_epoch!r}; expected a positive integer")
    run = _Run(config, optimizer, int(steps_per_epoch), config.get("max_epochs") if epochs is None else epochs, name)
    return _BUILDERS[name](run)


@dataclass(frozen=True)
class _Run:
    """What a schedule builder needs: the configuration, the optimizer and the run's length."""

    config: Mapping[str, Any]
    optimizer: Optimizer
    steps_per_epoch: int
    epochs_given: Any
    name: str

    @property
    def epochs(self) -> int:
        epochs = self.epochs_given
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
            raise TrialConfigError(
                f"the {self.name} schedule needs the trial's total epochs (a positive integer), got {epochs!r}"
            )
        return int(epochs)

    def number(self, key: str, default: float, valid: Callable[[float], bool], expected: str) -> float:
        return config_number(self.config, key, default, valid, expected)

    def fraction(self, key: str, default: float, upper_closed: bool = False) -> float:
        """A number in (0, 1), or (0, 1] with ``upper_closed``."""
        valid = (lambda v: 0 < v <= 1) if upper_closed else (lambda v: 0 < v < 1)
        return self.number(key, default, valid, "a number in (0, 1]" if upper_closed else "a number in (0, 1)")

    def integer(self, key: str, default: int, low: int) -> int:
        return int(self.number(key, default, lambda v: float(v).is_integer() and v >= low, f"an integer >= {low}"))

    def base_lrs(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def cycle_momentum(self) -> dict[str, Any]:
        """OneCycleLR/CyclicLR momentum arguments: cycled by default where the optimizer has
        momentum > 0 or Adam's beta1, between that value and ``MOMENTUM_SPAN`` below it."""
        groups = self.optimizer.param_groups
        peaks = [float(g["betas"][0]) if "betas" in g else float(g.get("momentum", 0.0)) for g in groups]
        has_momentum = all(peak > 0 for peak in peaks)
        wanted = self.config.get("cycle_momentum")
        if wanted is None:
            wanted = has_momentum
        if not isinstance(wanted, bool):
            raise TrialConfigError(f"config['cycle_momentum'] is {wanted!r}; expected true or false")
        if wanted and not has_momentum:
            raise TrialConfigError("config['cycle_momentum'] is true but the optimizer has no momentum (or beta1) to cycle")
        if not wanted:
            return {"cycle_momentum": False}
        base = [max(0.0, peak - MOMENTUM_SPAN) for peak in peaks]
        return {"cycle_momentum": True, "base_momentum": base, "max_momentum": peaks}


def cosine_factor(step: int, total: int, floor: float) -> float:
    """Cosine annealing from 1 at ``step`` 0 to ``floor`` at ``step`` ``total`` (and after)."""
    if total <= 0:
        return 1.0
    progress = min(step, total) / total
    return floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2


def warmup_cosine_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up ``(step + 1) / (warmup + 1)`` for ``warmup`` steps, then
    :func:`cosine_factor` from 1 down to ``floor`` at step ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return cosine_factor(step - warmup, total - warmup, floor)


def _constant(run: _Run) -> LRSchedule:
    return LRSchedule(run.name, run.optimizer)


def _step(run: _Run) -> LRSchedule:
    step_size = run.integer("step_size", 10, low=1)
    gamma = run.fraction("gamma", 0.1, upper_closed=True)
    return LRSchedule(run.name, run.optimizer, StepLR(run.optimizer, step_size, gamma), "epoch")


def _exponential(run: _Run) -> LRSchedule:
    gamma = run.fraction("gamma", 0.95, upper_closed=True)
    return LRSchedule(run.name, run.optimizer, ExponentialLR(run.optimizer, gamma), "epoch")


def _min_lr_ratio(run: _Run) -> float:
    return run.number("min_lr_ratio", 0.0, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def _cosine(run: _Run) -> LRSchedule:
    # LambdaLR rather than CosineAnnealingLR: its single eta_min cannot follow per-layer rates.
    factor = functools.partial(cosine_factor, total=run.epochs - 1, floor=_min_lr_ratio(run))
    return LRSchedule(run.name, run.optimizer, LambdaLR(run.optimizer, factor), "epoch")


def _warmup_cosine(run: _Run) -> LRSchedule:
    epochs = run.epochs
    warmup_epochs = run.number(
        "warmup_epochs", 1.0, lambda v: 0 <= v < epochs, f"a number of epochs in [0, {epochs}) (the trial's epochs)"
    )
    total = epochs * run.steps_per_epoch
    warmup = round(warmup_epochs * run.steps_per_epoch)
    factor = functools.partial(warmup_cosine_factor, warmup=warmup, total=total - 1, floor=_min_lr_ratio(run))
    return LRSchedule(run.name, run.optimizer, LambdaLR(run.optimizer, factor), "batch", total)


def _onecycle(run: _Run) -> LRSchedule:
    total = run.epochs * run.steps_per_epoch
    scheduler = OneCycleLR(
        run.optimizer,
        max_lr=run.base_lrs(),
        total_steps=total,
        pct_start=run.fraction("pct_start", 0.3),
        div_factor=run.number("div_factor", 25.0, lambda v: v >= 1, "a number >= 1"),
        final_div_factor=run.number("final_div_factor", 1e4, lambda v: v >= 1, "a number >= 1"),
        **run.cycle_momentum(),
    )
    return LRSchedule(run.name, run.optimizer, scheduler, "batch", total)


def _cyclic(run: _Run) -> LRSchedule:
    ratio = run.fraction("cyclic_base_ratio", 0.1)
    cycle_epochs = run.number("cycle_epochs", 2.0, lambda v: v > 0, "a positive number of epochs")
    max_lrs = run.base_lrs()
    scheduler = CyclicLR(
        run.optimizer,
        base_lr=[lr * ratio for lr in max_lrs],
        max_lr=max_lrs,
        step_size_up=max(1, round(cycle_epochs * run.steps_per_epoch)),
        mode="triangular",
        **run.cycle_momentum(),
    )
    return LRSchedule(run.name, run.optimizer, scheduler, "batch")


def _plateau(run: _Run) -> LRSchedule:
    scheduler = ReduceLROnPlateau(
        run.optimizer,
        mode="min",
        factor=run.fraction("plateau_factor", 0.5),
        patience=run.integer("plateau_patience", 2, low=0),
    )
    return LRSchedule(run.name, run.optimizer, scheduler, "epoch")


_BUILDERS: dict[str, Callable[[_Run], LRSchedule]] = {
    "constant": _constant,
    "step": _step,
    "exponential": _exponential,
    "cosine": _cosine,
    "warmup_cosine": _warmup_cosine,
    "onecycle": _onecycle,
    "cyclic": _cyclic,
    "plateau": _plateau,
}
