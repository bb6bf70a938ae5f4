"""The study's epoch budget (``budget.epochs``): what counts as an epoch trained, and the ledger
the searcher keeps of them.

Every epoch a trial trains is charged, whatever becomes of it: each result a trial reports to Ray
Tune is one epoch, so an epoch trained again after a retry from an older checkpoint, or after a
resume, counts again. An epoch cut short by divergence or a per-trial limit counts; Tune's repeat
of a trial's last result (``done`` already set) and a result that only says the workload raised do
not. Once the study's total reaches the budget, each running trial stops at its next result and is
told PRUNED with :func:`budget_stop_reason`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.keys import Result


def budget_stop_reason(epochs: int) -> str:
    """The stop reason of a trial the epoch budget ended after ``epochs`` epochs told."""
    if epochs == 0:
        return "stopped before its first epoch when the epoch budget was reached"
    return f"stopped at epoch {epochs} when the epoch budget was reached"


def _cut_short(result: dict[str, Any]) -> bool:
    return bool(result.get(Result.LIMIT_EXCEEDED) or result.get(Result.DIVERGED))


def trained_an_epoch(result: dict[str, Any]) -> bool:
    """Whether ``result`` (as Ray Tune's stopper gets it) is an epoch trained."""
    if Result.EPOCH not in result or result.get(Result.DONE):
        return False
    return not result.get(Result.TRIAL_FAILED) or _cut_short(result)


@dataclass
class EpochLedger:
    """The epochs a study's trials trained: ``before`` this run (a resumed study), ``run`` in it,
    and per trial until it is told (``trial number -> epochs``, a resumed trial's earlier ones
    included). ``budget`` is ``budget.epochs`` (None: no budget, the epochs are still counted);
    ``stopped`` the Ray Tune trial ids the budget stopped."""

    budget: int | None = None
    before: int = 0
    run: int = 0
    per_trial: dict[int, int] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)

    @property
    def spent(self) -> int:
        return self.before + self.run

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.spent >= self.budget

    def charge(self, number: int, trial_id: str, result: dict[str, Any]) -> bool:
        """Charge ``result`` to trial ``number`` when it is an epoch trained; return whether the
        trial is to stop at this result because the budget is spent (not one that ends anyway)."""
        if not trained_an_epoch(result):
            return False
        self.per_trial[number] = self.per_trial.get(number, 0) + 1
        self.run += 1
        if _cut_short(result) or not self.exhausted:
            return False
        self.stopped.add(trial_id)
        return True

    def settle(self, number: int) -> int:
        """The epochs charged to trial ``number``, as it is told (and forgotten here)."""
        return self.per_trial.pop(number, 0)
