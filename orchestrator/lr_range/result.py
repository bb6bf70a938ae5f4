"""What one LR range test recorded and what it suggests: :class:`LRRangeResult`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


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
        num_steps: batches consumed (forward passes); at most ``MAX_EPOCHS`` (3) epochs.
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
        confident: True when a ramp of enough steps showed both a descent clearly above the noise
            and the edge; only then should ``bounds`` replace a study's declared LR range.
        confidence_reason: why the suggestion is (not) confident, in a few words.
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
    confidence_reason: str = ""
    notes: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction_of_epoch(self) -> float | None:
        """Batches consumed in epochs, up to 3 (None when the epoch length is unknown)."""
        return None if not self.steps_per_epoch else self.num_steps / self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values: non-finite numbers become None, tuples become lists."""
        data = asdict(self)
        data["bounds"] = None if self.bounds is None else list(self.bounds)
        data["fraction_of_epoch"] = self.fraction_of_epoch
        return json_safe(data)

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


def epochs_of(steps: int, steps_per_epoch: int | None) -> str:
    """``2.2 epochs of 45 batches``: what ``steps`` batches are, in epochs."""
    if not steps_per_epoch:
        return "batches of unknown number per epoch"
    epochs = steps / steps_per_epoch
    return f"{epochs:.2g} epoch{'' if epochs == 1 else 's'} of {steps_per_epoch} batches"


def json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return json_safe(value.item())
    return str(value)
