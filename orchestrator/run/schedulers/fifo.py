"""``scheduler: none``: no early stopping; every trial trains its full budget (Ray Tune's FIFO)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.spec.components import Component

if TYPE_CHECKING:
    from orchestrator.spec import StudySpec


def build(spec: "StudySpec") -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


NONE = Component(name="none", defaults={}, build=build)
