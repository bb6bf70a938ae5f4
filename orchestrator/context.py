"""What a workload function receives besides its configuration: the trial's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass
class TrialContext:
    """The running trial, as seen by a workload function ``fn(config, trial)``.

    Attributes:
        number: the Optuna trial number (stable across resumes).
        max_epochs: the most epochs this trial may train; the scheduler may stop it sooner.
        seed: a seed for this trial (the study seed plus the trial number).
        options: the study's ``workload_options``.
        cpus: CPUs reserved for the trial (torch's thread count is set to match).
        device: ``"cuda"`` when the trial was given a GPU, else ``"cpu"``.
    """

    number: int
    max_epochs: int
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    cpus: float = 1.0
    device: str = "cpu"
    _sink: Callable[[dict[str, Any]], None] | None = None
    epoch: int = 0

    def report(self, epoch: int | None = None, **metrics: float) -> None:
        """Report one epoch's metrics (``train_loss``, ``val_loss``, ``val_accuracy``, ``lr``...).

        Call once per epoch; ``epoch`` counts from 1 and defaults to the previous one plus one.
        The scheduler decides after each report whether the trial goes on; when it stops the
        trial this call does not return.
        """
        self.epoch = self.epoch + 1 if epoch is None else int(epoch)
        clean: dict[str, Any] = {"epoch": self.epoch}
        for key, value in metrics.items():
            clean[key] = _plain(value)
        if self._sink is None:
            raise RuntimeError("TrialContext.report called outside a running trial")
        self._sink(clean)


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars to Python numbers; everything else as given."""
    return value.item() if hasattr(value, "item") else value
