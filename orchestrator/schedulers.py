"""Build the Ray Tune trial scheduler a study spec names: asha, hyperband, median or none.

Every scheduler measures time in epochs (Tune's ``training_iteration``: one report per epoch).
``hyperband`` is the asynchronous variant (several ASHA brackets of different aggressiveness),
which keeps every slot busy with concurrent trials and never has to pause one.
"""

from __future__ import annotations

import math

from ray.tune.schedulers import (
    ASHAScheduler,
    AsyncHyperBandScheduler,
    FIFOScheduler,
    MedianStoppingRule,
    TrialScheduler,
)

from orchestrator.spec import StudySpec

TIME_ATTR = "training_iteration"


def hyperband_brackets(max_epochs: int, reduction_factor: float) -> int:
    """HyperBand's bracket count: s_max + 1 with s_max = floor(log_eta(max_epochs))."""
    return int(math.floor(math.log(max_epochs) / math.log(reduction_factor) + 1e-9)) + 1


def build_trial_scheduler(spec: StudySpec) -> TrialScheduler:
    """The early-stopping scheduler for ``spec`` (metric and mode from its objective)."""
    name, opts = spec.scheduler.name, spec.scheduler.options
    metric, mode = spec.objective.metric, spec.objective.mode
    if name == "asha":
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            max_t=opts["max_epochs"],
            grace_period=opts["grace_period"],
            reduction_factor=opts["reduction_factor"],
            brackets=opts["brackets"],
        )
    if name == "hyperband":
        return AsyncHyperBandScheduler(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            max_t=opts["max_epochs"],
            grace_period=1,
            reduction_factor=opts["reduction_factor"],
            brackets=hyperband_brackets(opts["max_epochs"], opts["reduction_factor"]),
        )
    if name == "median":
        return MedianStoppingRule(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            grace_period=opts["grace_period"],
            min_samples_required=opts["min_samples_required"],
        )
    return FIFOScheduler()
