"""The early-stopping schedulers a study file can name, one module each (options, checks and
builder beside each other), and how a resumed study rebuilds their state.

Every scheduler measures time in the epochs the workload reports (``epoch``), so a trial resumed
from a checkpoint at epoch k goes on at k + 1 in the scheduler's eyes too. Ray Tune does not
restore a scheduler's state when a study resumes; stepsize's own schedulers (on Ray Tune's public
scheduler interface) rebuild it from the study's recorded intermediate values instead:
:func:`seed_scheduler` gives ASHA's rungs and the median rule's history every epoch the study's
trials reported, keyed by Optuna trial number, so a resumed trial is judged against the same rungs
it would have met without the interruption.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from orchestrator.run.schedulers.asha import ASHA, HYPERBAND
from orchestrator.run.schedulers.fifo import NONE
from orchestrator.run.schedulers.median import MEDIAN
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    from orchestrator.spec import StudySpec

Curves = Mapping[int, Mapping[int, float]]  # Optuna trial number -> {epoch: objective value}

#: Every scheduler by the name a study file gives it.
SCHEDULERS: dict[str, Component] = {component.name: component for component in (ASHA, HYPERBAND, MEDIAN, NONE)}

__all__ = ["SCHEDULERS", "Curves", "build_trial_scheduler", "seed_scheduler"]


def build_trial_scheduler(spec: "StudySpec") -> Any:
    """The early-stopping scheduler ``spec`` names (metric and mode from its objective)."""
    return SCHEDULERS[spec.scheduler.name].build(spec)


def seed_scheduler(scheduler: Any, curves: Curves) -> None:
    """Give ``scheduler`` the study's recorded curves (no-op for schedulers without state)."""
    seed = getattr(scheduler, "seed", None)
    if callable(seed):
        seed(curves)
