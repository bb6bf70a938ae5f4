"""The samplers a study file can name, one module each (its options, checks and builder beside
each other), and :func:`build_sampler`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.spec.components import Component
from orchestrator.study.samplers.gp import GP
from orchestrator.study.samplers.grid import GRID, AskTellGridSampler, grid_size
from orchestrator.study.samplers.qmc import QMC
from orchestrator.study.samplers.random_search import RANDOM
from orchestrator.study.samplers.tpe import TPE

if TYPE_CHECKING:
    import optuna

    from orchestrator.spec import StudySpec

#: Every sampler by the name a study file gives it.
SAMPLERS: dict[str, Component] = {component.name: component for component in (TPE, GP, RANDOM, GRID, QMC)}

__all__ = ["SAMPLERS", "AskTellGridSampler", "build_sampler", "grid_size"]


def build_sampler(spec: "StudySpec") -> "optuna.samplers.BaseSampler":
    """The sampler ``spec`` names, seeded with ``spec.seed`` so the first configurations repeat."""
    return SAMPLERS[spec.sampler.name].build(spec)
