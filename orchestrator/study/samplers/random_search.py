"""``sampler: random``: Optuna's random sampler (a baseline; no model of the space)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.spec.components import Component

if TYPE_CHECKING:
    import optuna

    from orchestrator.spec import StudySpec


def build(spec: "StudySpec") -> "optuna.samplers.BaseSampler":
    import optuna

    return optuna.samplers.RandomSampler(seed=spec.seed)


RANDOM = Component(name="random", defaults={}, build=build)
