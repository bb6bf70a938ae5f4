"""``sampler: grid``: every point of a grid over the space once (``points`` per continuous
parameter, log-spaced on log scales), through Optuna's grid sampler."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import optuna
from optuna.samplers import GridSampler
from optuna.trial import FrozenTrial, TrialState

from orchestrator.errors import SpecError
from orchestrator.spec.checks import require_whole
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    from orchestrator.spec import StudySpec
    from search_spaces import SearchSpace


class AskTellGridSampler(GridSampler):
    """Optuna's GridSampler for ask/tell use.

    The stock sampler calls ``study.stop()`` once the grid is exhausted, which only works inside
    ``study.optimize``; here the searcher asks :meth:`GridSampler.is_exhausted` instead.
    """

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


def grid_size(spec: "StudySpec") -> int:
    """Number of points in the grid the grid sampler walks."""
    grid = spec.search_space.grid(spec.sampler.options["points"])
    return math.prod(len(values) for values in grid.values())


def _check(options: dict[str, Any], *, space: "SearchSpace", **_: Any) -> None:
    require_whole(options, "points", "sampler")
    if space.is_conditional:
        raise SpecError("sampler.name", "grid", "a sampler other than grid for a conditional search space (one with `when:`)",
                        "Use tpe or random, or drop the conditions.")
    if options["points"] < 2:
        raise SpecError("sampler.points", options["points"], "at least 2 grid points per continuous parameter")


def build(spec: "StudySpec") -> AskTellGridSampler:
    return AskTellGridSampler(spec.search_space.grid(spec.sampler.options["points"]), seed=spec.seed)


GRID = Component(name="grid", defaults={"points": 8}, check=_check, build=build)
