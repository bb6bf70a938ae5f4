"""``sampler: gp``: Optuna's Gaussian-process sampler (small budgets, continuous spaces)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.spec.checks import require_whole
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    import optuna

    from orchestrator.spec import StudySpec


def _check(options: dict[str, Any], **_: Any) -> None:
    require_whole(options, "n_startup_trials", "sampler")


def build(spec: "StudySpec") -> "optuna.samplers.BaseSampler":
    import optuna

    return optuna.samplers.GPSampler(seed=spec.seed, n_startup_trials=spec.sampler.options["n_startup_trials"])


GP = Component(name="gp", defaults={"n_startup_trials": 10}, check=_check, build=build)
