"""Named components a study file picks by name (``sampler: tpe``, ``scheduler: asha``).

Each sampler (``orchestrator.study.samplers``) and scheduler (``orchestrator.run.schedulers``)
declares a :class:`Component` beside the code that builds it: its options with their defaults, the
checks beyond the options' types, and its builder. The spec validator reads those registries
through :func:`parse_choice`, which gives every component the same error messages.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from orchestrator.errors import SpecError
from orchestrator.spec.checks import option_types, reject_unknown

if TYPE_CHECKING:
    from orchestrator.spec.model import Budget, StudySpec
    from search_spaces import SearchSpace


@dataclass(frozen=True)
class Choice:
    """A named component (sampler or scheduler) with its options, defaults filled in."""

    name: str
    options: dict[str, Any]


def _no_check(options: dict[str, Any], *, space: "SearchSpace", budget: "Budget") -> None:
    return None


@dataclass(frozen=True)
class Component:
    """A sampler or scheduler a study file can name.

    Attributes:
        name: what the study file writes (``tpe``, ``asha``...).
        defaults: every option with its default; an option not listed here is refused.
        check: ``check(options, space=..., budget=...)`` raises ``SpecError`` for a value the
            option's type allows but the component cannot use, and may fill defaults that depend
            on the rest of the spec (``max_epochs: null`` becomes the budget's). ``options`` is a
            copy it may change.
        build: ``build(spec)`` makes the Optuna sampler or Ray Tune scheduler.
    """

    name: str
    defaults: Mapping[str, Any]
    build: Callable[["StudySpec"], Any]
    check: Callable[..., None] = field(default=_no_check)


def parse_choice(
    value: Any, where: str, registry: Mapping[str, Component], *, space: "SearchSpace", budget: "Budget"
) -> Choice:
    """A component's name (``tpe``) or mapping (``{name: tpe, n_startup_trials: 20}``) validated
    against ``registry``, defaults filled in."""
    names = ", ".join(registry)
    shorthand = isinstance(value, str)
    if shorthand:
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise SpecError(where, value, f"a name ({names}) or a mapping with name and options")
    name = value.get("name")
    if name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        raise SpecError(where if shorthand else f"{where}.name", name, f"one of {names}",
                        f"Did you mean {close[0]!r}?" if close else None)
    component = registry[name]
    given = {k: v for k, v in value.items() if k != "name"}
    reject_unknown(given, set(component.defaults), f"{where}.")
    options = {**component.defaults, **given}
    option_types(options, component.defaults, where)
    component.check(options, space=space, budget=budget)
    return Choice(name, options)
