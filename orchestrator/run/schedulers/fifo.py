"""``scheduler: none``: no early stopping; every trial trains its full budget (Ray Tune's FIFO
order, through :class:`~orchestrator.run.schedulers._base.ObjectiveScheduler`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.spec.components import Component

if TYPE_CHECKING:
    from orchestrator.spec import StudySpec


def build(spec: "StudySpec") -> Any:
    from orchestrator.run.schedulers._base import ObjectiveScheduler

    return ObjectiveScheduler(spec.objective.metric, spec.objective.mode)


NONE = Component(name="none", defaults={}, build=build)
