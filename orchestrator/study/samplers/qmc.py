"""``sampler: qmc``: Optuna's quasi-Monte Carlo sampler (Sobol, Halton or Latin hypercube)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import SpecError
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    import optuna

    from orchestrator.spec import StudySpec

QMC_TYPES = ("sobol", "halton", "lhs")


def _check(options: dict[str, Any], **_: Any) -> None:
    if options["qmc_type"] not in QMC_TYPES:
        raise SpecError("sampler.qmc_type", options["qmc_type"], "sobol, halton or lhs")


def build(spec: "StudySpec") -> "optuna.samplers.BaseSampler":
    import optuna

    opts = spec.sampler.options
    return optuna.samplers.QMCSampler(qmc_type=opts["qmc_type"], scramble=opts["scramble"], seed=spec.seed)


QMC = Component(name="qmc", defaults={"qmc_type": "sobol", "scramble": True}, check=_check, build=build)
