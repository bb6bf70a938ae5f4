"""Charging a search for the epochs it trains, for methods that drive their own trials.

A method trains a configuration by asking an :class:`EpochLedger` for it: a training from scratch
pays for epochs 1..n again (also for a configuration trained before), a resumed trial pays only the
epochs past the one it reached. Every epoch trained goes to the :class:`~bench.common.Trace`, so
its value counts for the incumbent whether or not the method itself is told it; the training
stops the moment the trace's budget is spent, even mid-way.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, Sequence

from bench.common import Trace

#: ``config -> values``: the configuration's metric after each epoch (index 0: before training).
Curve = Callable[[Mapping[str, Any]], Sequence[float]]


class EpochLedger:
    """Plays trials on learning curves and charges ``trace`` one unit per epoch trained."""

    def __init__(self, trace: Trace, curve: Curve) -> None:
        self.trace = trace
        self.curve = curve
        self.reached: dict[Hashable, int] = {}  # trial -> the last epoch it trained
        self._curves: dict[Hashable, Sequence[float]] = {}

    def train(self, trial: Hashable, config: Mapping[str, Any], epochs: int, *, resume: bool = False) -> float | None:
        """Train ``trial`` (``config``) up to epoch ``epochs``: from scratch, or with ``resume`` from
        the epoch it reached (a trial not seen before starts from scratch either way). Returns the
        value at epoch ``epochs``, or None when the budget ran out before it."""
        if not resume or trial not in self._curves:
            self._curves[trial] = self.curve(config)
            self.reached[trial] = 0
        values = self._curves[trial]
        for epoch in range(self.reached[trial] + 1, epochs + 1):
            if self.trace.spent:
                return None
            self.trace.add(trial, float(values[epoch]))
            self.reached[trial] = epoch
        return float(values[epochs]) if self.reached[trial] >= epochs else None
