"""Local moves: a configuration near one of a study's best trials, as SMAC's local search steps
from its incumbents.

Each numeric parameter moves by a normal step of ``scale`` (in units of its range, on the log
scale where the distribution is logarithmic) and is clipped to the range, so a move that steps
past an edge lands on it: a search whose best trials lie near the edge of the space reaches the
edge itself, which a Parzen estimator truncated at the range (TPE) samples only rarely. A
categorical parameter keeps its value with probability ``1 - scale`` and is otherwise drawn
uniformly. Evidence: docs/search_quality.md, "Where the optimum lies".
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna import Study

PARENTS = 5  # a move starts from one of the study's best this many complete trials
LOCAL_SCALE = 0.2  # the step's standard deviation, in units of each range (docs/search_quality.md)


def to_unit(value: float, distribution: FloatDistribution | IntDistribution) -> float:
    """``value``'s place in the distribution's range, from 0 (low) to 1 (high)."""
    scale = math.log if distribution.log else float
    low, high = scale(distribution.low), scale(distribution.high)
    return 0.0 if high == low else (scale(value) - low) / (high - low)


def from_unit(unit: float, distribution: FloatDistribution | IntDistribution) -> float | int:
    """The value at ``unit`` (clipped to 0..1) of the distribution's range, on its step for
    integers and stepped floats."""
    low, high = distribution.low, distribution.high
    unit = min(1.0, max(0.0, unit))
    if distribution.log:
        value = math.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
    else:
        value = low + unit * (high - low)
    step = distribution.step
    if step is not None:
        value = low + round((value - low) / step) * step
    value = min(high, max(low, value))
    return int(value) if isinstance(distribution, IntDistribution) else float(value)


def perturb(params: dict[str, Any], search_space: dict[str, BaseDistribution], rng: np.random.Generator,
            scale: float) -> dict[str, Any]:
    """``params`` moved by one local step (see the module docstring) within ``search_space``."""
    moved: dict[str, Any] = {}
    for name, distribution in search_space.items():
        value = params.get(name)
        if isinstance(distribution, CategoricalDistribution):
            keep = value in distribution.choices and rng.random() >= scale
            moved[name] = value if keep else distribution.choices[int(rng.integers(len(distribution.choices)))]
        elif isinstance(distribution, (FloatDistribution, IntDistribution)):
            start = to_unit(value, distribution) if value is not None else float(rng.random())
            moved[name] = from_unit(start + rng.normal(0.0, scale), distribution)
    return moved


def local_move(study: "Study", search_space: dict[str, BaseDistribution], rng: np.random.Generator,
               scale: float) -> dict[str, Any] | None:
    """A local step from one of ``study``'s :data:`PARENTS` best complete trials (drawn
    uniformly); None while the study has no complete trial."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    best = heapq.nsmallest(PARENTS, complete, key=lambda t: sign * t.value)
    parent = best[int(rng.integers(len(best)))]
    return perturb(parent.params, search_space, rng, scale)
