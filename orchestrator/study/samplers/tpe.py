"""``sampler: tpe`` (the default): Optuna's TPE sampler.

``multivariate: false`` by default: independent TPE explores more under ASHA
(docs/search_quality.md). With ``constant_liar`` running trials count as bad guesses, so
concurrent trials spread out. ``history: 1000``: on long studies TPE models the good trials of the
whole study and the 1,000 most recent others, so a suggest costs the same at trial 10,000 as at
trial 1,000 (docs/benchmarks.md, "Scale"); ``history: null`` models every trial, as Optuna does.
``rung_model: true``: under a scheduler that stops trials early, once ``rung_model_after`` (a
quarter) of the budget is spent, a multivariate TPE fitted on the highest rung that
``rung_model_min_trials`` trials reached proposes instead, as BOHB fits a model per budget
(``orchestrator.study.samplers.rung_model``; docs/search_quality.md, "A model per rung").
``rung_model_local_moves: 0.5``: that share of the rung model's proposals are local moves from
the rung's best trials instead, which reach the edges of the space
(``orchestrator.study.samplers.local_moves``; docs/search_quality.md, "Where the optimum lies").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import SpecError
from orchestrator.spec.checks import is_int, is_number, require_whole
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    import optuna

    from orchestrator.spec import StudySpec


def _check(options: dict[str, Any], **_: Any) -> None:
    require_whole(options, "n_startup_trials", "sampler")
    require_whole(options, "n_ei_candidates", "sampler")
    if options.get("history") is not None:
        require_whole(options, "history", "sampler", "a whole number of at least 1, or null to model every trial")
    after = options["rung_model_after"]
    if not is_number(after) or not 0 <= after < 1:
        raise SpecError("sampler.rung_model_after", after, "a share of the budget from 0 (from the start) to below 1")
    share = options["rung_model_local_moves"]
    if not is_number(share) or not 0 <= share <= 1:
        raise SpecError("sampler.rung_model_local_moves", share,
                        "a share of the rung model's proposals from 0 (none) to 1 (all)")
    if not is_int(options["rung_model_min_trials"]) or options["rung_model_min_trials"] < 2:
        raise SpecError("sampler.rung_model_min_trials", options["rung_model_min_trials"],
                        "a whole number of trials of at least 2")


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
    start = tpe_sampler(**kwargs)
    if opts["rung_model"] and spec.scheduler.name != "none":
        return with_rung_model(spec, start)
    return start  # without early stopping every trial reaches the same epoch: no rungs to model


def with_rung_model(spec: "StudySpec", start: "optuna.samplers.BaseSampler") -> "optuna.samplers.BaseSampler":
    """``start`` with a multivariate TPE fitted per rung beside it (``rung_model``)."""
    import optuna

    from orchestrator.study.samplers.rung_model import RungModelSampler, epochs_reported

    opts, budget = spec.sampler.options, spec.budget

    def progress(study: "optuna.Study") -> float:  # the budget's share spent: epochs, else trials
        if budget.epochs is not None:
            return epochs_reported(study) / budget.epochs
        return len(study.get_trials(deepcopy=False)) / budget.trials

    model = optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, constant_liar=opts["constant_liar"],
                                       n_startup_trials=0, n_ei_candidates=opts["n_ei_candidates"])
    return RungModelSampler(start, model, min_trials=opts["rung_model_min_trials"],
                            after=opts["rung_model_after"], progress=progress, recent=opts["history"],
                            local_moves=opts["rung_model_local_moves"], seed=spec.seed)


TPE = Component(
    name="tpe",
    defaults={"n_startup_trials": 10, "multivariate": False, "constant_liar": True, "n_ei_candidates": 24,
              "history": 1000, "rung_model": True, "rung_model_after": 0.25, "rung_model_min_trials": 20,
              "rung_model_local_moves": 0.5},
    check=_check,
    build=build,
)
