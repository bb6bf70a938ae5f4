"""The divergence guard: a NaN or infinite loss, or a loss that climbs above ``loss_factor`` times
the first epoch's, stops the trial at once, inside the epoch where it happened."""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.errors import TrialDiverged


@dataclass
class DivergenceGuard:
    """Watches per-batch losses (smoothed) and per-epoch training losses.

    The reference is the first epoch's mean training loss; until that epoch ends it is the first
    batch's loss. ``loss_factor`` None disables the threshold (NaN and infinity still stop).
    """

    loss_factor: float | None = 4.0
    smoothing: float = 0.9
    reference: float | None = None
    _first_epoch_done: bool = False
    _ema: float | None = None

    def check_batch(self, loss: float, epoch: int) -> None:
        """Call with each batch's loss; raises :class:`~orchestrator.errors.TrialDiverged`."""
        if not math.isfinite(loss):
            raise TrialDiverged(epoch, loss, f"the loss became {loss}")
        if self.reference is None:
            self.reference = loss
        self._ema = loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
        self._check_threshold(self._ema, epoch, "smoothed batch loss")

    def check_epoch(self, train_loss: float | None, epoch: int) -> None:
        """Call with an epoch's mean training loss; the first one becomes the reference."""
        if train_loss is None:
            return
        if not math.isfinite(train_loss):
            raise TrialDiverged(epoch, train_loss, f"the training loss became {train_loss}")
        if not self._first_epoch_done:
            self._first_epoch_done = True
            self.reference = train_loss
            return
        self._check_threshold(train_loss, epoch, "training loss")

    def state_dict(self) -> dict[str, object]:
        """The reference and smoothed loss, so a resumed trial keeps its threshold."""
        return {"reference": self.reference, "first_epoch_done": self._first_epoch_done, "ema": self._ema}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.reference = state["reference"]  # type: ignore[assignment]
        self._first_epoch_done = bool(state["first_epoch_done"])
        self._ema = state["ema"]  # type: ignore[assignment]

    def penalty(self) -> float:
        """A finite, bad value to rank a diverged trial by when nothing worse is known."""
        reference = self.reference if self.reference is not None and math.isfinite(self.reference) else 1.0
        return abs(reference) * (self.loss_factor or 4.0) + 1.0

    def _check_threshold(self, loss: float, epoch: int, what: str) -> None:
        if self.loss_factor is None or self.reference is None or self.reference <= 0:
            return
        limit = self.loss_factor * self.reference
        if loss > limit:
            raise TrialDiverged(epoch, loss, f"{what} {loss:.4g} above {self.loss_factor:g} x the first epoch's {self.reference:.4g}")
