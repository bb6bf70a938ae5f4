"""``scheduler: asha`` (the default) and ``scheduler: hyperband``: asynchronous successive
halving over epochs, with one bracket (ASHA) or HyperBand's set of brackets of different
aggressiveness. Both keep every slot busy with concurrent trials and never pause one.

``grace_period: null`` means 3 epochs, capped at ``max_epochs`` (docs/search_quality.md has the
evidence); ``max_epochs: null`` means the budget's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import SpecError
from orchestrator.spec.checks import is_int, require_whole
from orchestrator.spec.components import Component

if TYPE_CHECKING:
    from orchestrator.run.schedulers._successive_halving import AsyncSuccessiveHalving
    from orchestrator.spec import Budget, StudySpec

DEFAULT_GRACE_PERIOD = 3  # ASHA's first rung, in epochs, when the spec gives none


def fill_max_epochs(options: dict[str, Any], budget: "Budget") -> None:
    """``max_epochs: null`` becomes the budget's; a given one must be whole and within it."""
    max_epochs = options["max_epochs"]
    if max_epochs is None:
        options["max_epochs"] = budget.max_epochs
    elif not is_int(max_epochs) or max_epochs > budget.max_epochs:
        raise SpecError("scheduler.max_epochs", max_epochs, f"a whole number from 1 to budget.max_epochs ({budget.max_epochs})")


def check_reduction_factor(options: dict[str, Any]) -> None:
    if options["reduction_factor"] <= 1:
        raise SpecError("scheduler.reduction_factor", options["reduction_factor"], "a number above 1 (2, 3 or 4 are usual)")


def _check_asha(options: dict[str, Any], *, budget: "Budget", **_: Any) -> None:
    fill_max_epochs(options, budget)
    if options["grace_period"] is None:
        options["grace_period"] = min(DEFAULT_GRACE_PERIOD, options["max_epochs"])
    require_whole(options, "grace_period", "scheduler")
    require_whole(options, "brackets", "scheduler")
    if options["grace_period"] > options["max_epochs"]:
        raise SpecError("scheduler.grace_period", options["grace_period"],
                        f"a number of epochs not above the maximum ({options['max_epochs']})")
    check_reduction_factor(options)


def _check_hyperband(options: dict[str, Any], *, budget: "Budget", **_: Any) -> None:
    fill_max_epochs(options, budget)
    check_reduction_factor(options)


def build_asha(spec: "StudySpec") -> "AsyncSuccessiveHalving":
    from orchestrator.run.schedulers._successive_halving import AsyncSuccessiveHalving

    opts = spec.scheduler.options
    return AsyncSuccessiveHalving(metric=spec.objective.metric, mode=spec.objective.mode, max_t=opts["max_epochs"],
                                  grace_period=opts["grace_period"], reduction_factor=opts["reduction_factor"],
                                  brackets=opts["brackets"])


def build_hyperband(spec: "StudySpec") -> "AsyncSuccessiveHalving":
    from orchestrator.run.schedulers._successive_halving import (
        AsyncSuccessiveHalving,
        hyperband_brackets,
    )

    opts = spec.scheduler.options
    return AsyncSuccessiveHalving(metric=spec.objective.metric, mode=spec.objective.mode, max_t=opts["max_epochs"],
                                  grace_period=1, reduction_factor=opts["reduction_factor"],
                                  brackets=hyperband_brackets(opts["max_epochs"], opts["reduction_factor"]))


ASHA = Component(
    name="asha",
    defaults={"grace_period": None, "reduction_factor": 3, "max_epochs": None, "brackets": 1},
    check=_check_asha,
    build=build_asha,
)
HYPERBAND = Component(
    name="hyperband",
    defaults={"reduction_factor": 3, "max_epochs": None},
    check=_check_hyperband,
    build=build_hyperband,
)
