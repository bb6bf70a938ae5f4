"""``sampler: tpe`` (the default): Optuna's TPE sampler.

``multivariate: false`` by default: independent TPE explores more under ASHA
(docs/search_quality.md). With ``constant_liar`` running trials count as bad guesses, so
concurrent trials spread out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.spec.checks import require_whole
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    import optuna

    from orchestrator.spec import StudySpec


def _check(options: dict[str, Any], **_: Any) -> None:
    require_whole(options, "n_startup_trials", "sampler")
    require_whole(options, "n_ei_candidates", "sampler")


def build(spec: "StudySpec") -> "optuna.samplers.BaseSampler":
    """Optuna's ``TPESampler`` with the study's options, through the adapter that cuts its cost
    on long studies (``orchestrator._compat.optuna_tpe``); stock where the adapter is off."""
    from orchestrator._compat.optuna_tpe import tpe_sampler

    opts = spec.sampler.options
    kwargs: dict[str, Any] = dict(
        seed=spec.seed,
        n_startup_trials=opts["n_startup_trials"],
        multivariate=opts["multivariate"],
        constant_liar=opts["constant_liar"],
        n_ei_candidates=opts["n_ei_candidates"],
    )
    if opts["multivariate"] and spec.search_space.is_conditional:
        kwargs["group"] = True  # conditional spaces: model each branch's parameters jointly
    return tpe_sampler(**kwargs)


TPE = Component(
    name="tpe",
    defaults={"n_startup_trials": 10, "multivariate": False, "constant_liar": True, "n_ei_candidates": 24},
    check=_check,
    build=build,
)
