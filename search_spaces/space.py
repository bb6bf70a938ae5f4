"""A search space: named parameters that turn into Optuna distributions and suggestions.

A space is written as a mapping from parameter name to either a plain value (fixed) or a
mapping with a ``type``::

    learning_rate: {type: float, low: 1.0e-4, high: 1.0, log: true}
    batch_size:    {type: categorical, choices: [16, 32, 64, 128]}
    epochs_warmup: {type: int, low: 0, high: 5}
    momentum:      {type: float, low: 0.5, high: 0.99, when: {optimizer: [sgd, rmsprop]}}
    model:         cnn                      # fixed value
    nesterov:      {type: fixed, value: true}

``when`` makes a parameter conditional: it is only sampled when every named parameter
(sampled or fixed earlier in the space) takes one of the listed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from orchestrator.errors import SpaceError

PARAM_TYPES = ("float", "int", "categorical", "fixed")
_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
    "fixed": {"type", "value", "when"},
}


@dataclass(frozen=True)
class Param:
    """One parameter of a space. ``distribution`` is None for fixed values."""

    name: str
    kind: str
    distribution: BaseDistribution | None = None
    value: Any = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def is_active(self, config: Mapping[str, Any]) -> bool:
        """True when every condition of ``when`` holds for the values chosen so far."""
        return all(config.get(name) in allowed for name, allowed in self.when.items())

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Draw this parameter's value from ``trial`` (or return the fixed value)."""
        dist = self.distribution
        if dist is None:
            return self.value
        if isinstance(dist, FloatDistribution):
            return trial.suggest_float(self.name, dist.low, dist.high, log=dist.log, step=dist.step)
        if isinstance(dist, IntDistribution):
            return trial.suggest_int(self.name, dist.low, dist.high, log=dist.log, step=dist.step)
        return trial.suggest_categorical(self.name, dist.choices)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered collection of parameters."""

    params: tuple[Param, ...]

    @classmethod
    def from_mapping(cls, mapping: Any, where: str = "search_space") -> "SearchSpace":
        """Build and validate a space; raise :class:`SpaceError` naming the bad field."""
        if not isinstance(mapping, Mapping) or not mapping:
            raise SpaceError(where, mapping, "a non-empty mapping of parameter name to definition")
        params: list[Param] = []
        for name, definition in mapping.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise SpaceError(f"{where}", name, "parameter names that are Python identifiers")
            params.append(_parse_param(name, definition, f"{where}.{name}"))
        names = [p.name for p in params]
        for index, param in enumerate(params):
            for cond_name in param.when:
                if cond_name not in names[:index]:
                    raise SpaceError(
                        f"{where}.{param.name}.when",
                        cond_name,
                        f"a parameter defined above {param.name!r} (one of {names[:index] or 'none'})",
                    )
        return cls(tuple(params))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def searched(self) -> list[Param]:
        """Parameters that are sampled (not fixed)."""
        return [p for p in self.params if p.distribution is not None]

    @property
    def is_conditional(self) -> bool:
        return any(p.when for p in self.params)

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of the sampled parameters (conditional ones included)."""
        return {p.name: p.distribution for p in self.searched}  # type: ignore[misc]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Sample a whole configuration, define-by-run, honouring conditions."""
        config: dict[str, Any] = {}
        for param in self.params:
            if param.is_active(config):
                config[param.name] = param.suggest(trial)
        return config

    def fixed_values(self) -> dict[str, Any]:
        return {p.name: p.value for p in self.params if p.distribution is None}

    def grid(self, points: int) -> dict[str, list[Any]]:
        """Grid values per sampled parameter: log-spaced on log scales, listed choices as given."""
        return {p.name: _grid_values(p.distribution, points) for p in self.searched}  # type: ignore[arg-type]

    def to_mapping(self) -> dict[str, Any]:
        """The space back in its YAML form (for records and study attributes)."""
        out: dict[str, Any] = {}
        for p in self.params:
            out[p.name] = _param_to_mapping(p)
        return out


def _grid_values(dist: BaseDistribution, points: int) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    low, high = dist.low, dist.high  # type: ignore[attr-defined]
    step = getattr(dist, "step", None)
    if isinstance(dist, IntDistribution) and (high - low) // dist.step + 1 <= points:
        return list(range(low, high + 1, dist.step))
    if getattr(dist, "log", False):
        ratio = math.log(high / low)
        values = [low * math.exp(ratio * i / (points - 1)) for i in range(points)] if points > 1 else [low]
    else:
        values = [low + (high - low) * i / (points - 1) for i in range(points)] if points > 1 else [low]
    if isinstance(dist, IntDistribution):
        return sorted({int(round(v)) for v in values})
    if step:
        values = [low + round((v - low) / step) * step for v in values]
    return sorted({float(f"{v:.6g}") for v in values})


def _param_to_mapping(p: Param) -> Any:
    dist = p.distribution
    if dist is None:
        body: dict[str, Any] = {"type": "fixed", "value": p.value}
    elif isinstance(dist, CategoricalDistribution):
        body = {"type": "categorical", "choices": list(dist.choices)}
    else:
        body = {"type": "float" if isinstance(dist, FloatDistribution) else "int", "low": dist.low, "high": dist.high}
        if dist.log:
            body["log"] = True
        if dist.step not in (None, 1) or (isinstance(dist, FloatDistribution) and dist.step is not None):
            body["step"] = dist.step
    if p.when:
        body["when"] = {k: list(v) for k, v in p.when.items()}
    return body


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Parameters the built-in training loop reads, with the values it can train with.
_KNOWN_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "learning_rate": (lambda v: _is_number(v) and v > 0, "learning rates above 0"),
    "batch_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "whole batch sizes of at least 1"),
    "momentum": (lambda v: _is_number(v) and 0 <= v <= 1, "momentum values from 0 to 1"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "weight decay values of at least 0"),
}


def _check_known(param: Param, where: str) -> Param:
    """Values a known parameter cannot train with (batch size 0, a negative LR...) are refused."""
    known = _KNOWN_RANGES.get(param.name)
    if known is None:
        return param
    accepts, what = known
    dist = param.distribution
    if dist is None:
        candidates = [("value", param.value)]
    elif isinstance(dist, CategoricalDistribution):
        candidates = [("choices", choice) for choice in dist.choices]
    else:
        if param.name == "batch_size" and isinstance(dist, FloatDistribution):
            raise SpaceError(f"{where}.type", "float", "int or categorical: batch sizes are whole numbers")
        candidates = [("low", dist.low), ("high", dist.high)]
    for key, value in candidates:
        if not accepts(value):
            field_name = where if key == "value" else f"{where}.{key}"
            raise SpaceError(field_name, value, what)
    return param


def _parse_param(name: str, definition: Any, where: str) -> Param:
    return _check_known(_parse_any_param(name, definition, where), where)


def _parse_any_param(name: str, definition: Any, where: str) -> Param:
    if not isinstance(definition, Mapping):
        if isinstance(definition, (list, tuple)):
            raise SpaceError(
                where, definition, "a fixed scalar, or a mapping such as {type: categorical, choices: [...]}"
            )
        return Param(name, "fixed", value=definition)
    kind = definition.get("type")
    if kind not in PARAM_TYPES:
        raise SpaceError(f"{where}.type", kind, f"one of {', '.join(PARAM_TYPES)}")
    unknown = sorted(set(definition) - _KEYS[kind])
    if unknown:
        raise SpaceError(f"{where}.{unknown[0]}", definition[unknown[0]], f"only the keys {sorted(_KEYS[kind])} for type {kind}")
    when = _parse_when(definition.get("when"), f"{where}.when")
    if kind == "fixed":
        if "value" not in definition:
            raise SpaceError(f"{where}.value", None, "the fixed value of the parameter")
        return Param(name, "fixed", value=definition["value"], when=when)
    if kind == "categorical":
        choices = definition.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise SpaceError(f"{where}.choices", choices, "a non-empty list of values")
        for choice in choices:
            if not (choice is None or isinstance(choice, (bool, int, float, str))):
                raise SpaceError(f"{where}.choices", choices, "a list of scalars (numbers, strings, booleans, null)")
        if len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{where}.choices", choices, "a list without repeated values")
        return Param(name, kind, CategoricalDistribution(tuple(choices)), when=when)
    return Param(name, kind, _numeric_distribution(kind, definition, where), when=when)


def _numeric_distribution(kind: str, definition: Mapping[str, Any], where: str) -> BaseDistribution:
    low, high = definition.get("low"), definition.get("high")
    log = definition.get("log", False)
    step = definition.get("step")
    is_int = kind == "int"
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value) or (is_int and not float(value).is_integer()):
            raise SpaceError(f"{where}.{key}", value, "an integer" if is_int else "a finite number")
    if not isinstance(log, bool):
        raise SpaceError(f"{where}.log", log, "true or false")
    if low > high:
        raise SpaceError(f"{where}.low", low, f"a value not above high ({high})")
    if log and low <= 0:
        raise SpaceError(f"{where}.low", low, "a value above 0 when log: true")
    if step is not None:
        if not _is_number(step) or step <= 0 or (is_int and not float(step).is_integer()):
            raise SpaceError(f"{where}.step", step, "a positive " + ("integer" if is_int else "number"))
        if log:
            raise SpaceError(f"{where}.step", step, "no step when log: true (Optuna does not combine them)")
    if is_int:
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def _parse_when(when: Any, where: str) -> dict[str, tuple[Any, ...]]:
    if when is None:
        return {}
    if not isinstance(when, Mapping) or not when:
        raise SpaceError(where, when, "a mapping from parameter name to a value or a list of values")
    parsed: dict[str, tuple[Any, ...]] = {}
    for name, allowed in when.items():
        parsed[str(name)] = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
    return parsed

