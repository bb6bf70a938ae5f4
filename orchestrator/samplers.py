"""Build the Optuna sampler a study spec names: tpe, gp, random, grid or qmc."""

from __future__ import annotations

import math
from typing import Any, Sequence

import optuna
from optuna.samplers import BaseSampler, GridSampler
from optuna.trial import FrozenTrial, TrialState

from orchestrator.spec import StudySpec
from orchestrator.tpe import StudyTPESampler


class AskTellGridSampler(GridSampler):
    """Optuna's GridSampler for ask/tell use.

    The stock sampler calls ``study.stop()`` once the grid is exhausted, which only works inside
    ``study.optimize``; here the searcher asks :meth:`GridSampler.is_exhausted` instead.
    """

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


def grid_size(spec: StudySpec) -> int:
    """Number of points in the grid the grid sampler walks."""
    grid = spec.search_space.grid(spec.sampler.options["points"])
    return math.prod(len(values) for values in grid.values())


def build_sampler(spec: StudySpec) -> BaseSampler:
    """The sampler for ``spec``, seeded with ``spec.seed`` so the first configurations repeat."""
    name, opts, seed = spec.sampler.name, spec.sampler.options, spec.seed
    if name == "tpe":
        kwargs: dict[str, Any] = dict(
            seed=seed,
            n_startup_trials=opts["n_startup_trials"],
            multivariate=opts["multivariate"],
            constant_liar=opts["constant_liar"],
            n_ei_candidates=opts["n_ei_candidates"],
        )
        if opts["multivariate"] and spec.search_space.is_conditional:
            kwargs["group"] = True  # conditional spaces: model each branch's parameters jointly
        return StudyTPESampler(**kwargs)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=opts["n_startup_trials"])
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return AskTellGridSampler(spec.search_space.grid(opts["points"]), seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(qmc_type=opts["qmc_type"], scramble=opts["scramble"], seed=seed)
    raise ValueError(f"unknown sampler {name!r}")  # unreachable: the spec validated it
