"""``scheduler: median``: the median stopping rule over epochs (a trial worse than the median of
the others' running means at the same epoch stops)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import SpecError
from orchestrator.spec.checks import require_whole
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    from orchestrator.run.schedulers._median_stopping import MedianStopping
    from orchestrator.spec import Budget, StudySpec


def _check(options: dict[str, Any], *, budget: "Budget", **_: Any) -> None:
    require_whole(options, "grace_period", "scheduler")
    require_whole(options, "min_samples_required", "scheduler")
    if options["grace_period"] > budget.max_epochs:
        raise SpecError("scheduler.grace_period", options["grace_period"],
                        f"a number of epochs not above the maximum ({budget.max_epochs})")


def build(spec: "StudySpec") -> "MedianStopping":
    from orchestrator.run.schedulers._median_stopping import MedianStopping

    opts = spec.scheduler.options
    return MedianStopping(metric=spec.objective.metric, mode=spec.objective.mode, grace_period=opts["grace_period"],
                          min_samples_required=opts["min_samples_required"])


MEDIAN = Component(name="median", defaults={"grace_period": 3, "min_samples_required": 3}, check=_check, build=build)
