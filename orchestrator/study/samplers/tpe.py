"""``sampler: tpe`` (the default): Optuna's TPE sampler.

``multivariate: false`` by default: independent TPE explores more under ASHA
(docs/search_quality.md). With ``constant_liar`` running trials count as bad guesses, so
concurrent trials spread out. ``history: 1000``: on long studies TPE models the good trials of the
whole study and the 1,000 most recent others, so a suggest costs the same at trial 10,000 as at
trial 1,000 (docs/benchmarks.md, "Scale"); ``history: null`` models every trial, as Optuna does.
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
    if options.get("history") is not None:
        require_whole(options, "history", "sampler", "a whole number of at least 1, or null to model every trial")


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
        history=opts["history"],
    )
    if opts["multivariate"] and spec.search_space.is_conditional:
        kwargs["group"] = True  # conditional spaces: model each branch's parameters jointly
    return tpe_sampler(**kwargs)


TPE = Component(
    name="tpe",
    defaults={"n_startup_trials": 10, "multivariate": False, "constant_liar": True, "n_ei_candidates": 24,
              "history": 1000},
    check=_check,
    build=build,
)
