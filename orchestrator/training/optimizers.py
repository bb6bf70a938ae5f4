"""Build a ``torch.optim`` optimizer from a trial's configuration.

``config["optimizer"]`` picks one of :data:`OPTIMIZERS` (``sgd`` by default); each reads its own
keys (``momentum``, ``beta1``...). ``head_lr_multiplier`` or ``layer_lr_decay`` give the model's
layers their own learning rates through torch parameter groups.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from orchestrator.errors import TrialConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
DEFAULT_OPTIMIZER = "sgd"
DEFAULT_LR = 0.05  # SGD's; the adaptive optimizers default to their usual, smaller rates
DEFAULT_LEARNING_RATES = {"sgd": DEFAULT_LR, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2}
DEFAULT_MOMENTUM = 0.9

Params = list[dict[str, Any]]
_Check = tuple[Callable[[float], bool], str]
_POSITIVE: _Check = (lambda v: v > 0, "a positive number")
_NON_NEGATIVE: _Check = (lambda v: v >= 0, "a number >= 0")
_UNIT_OPEN: _Check = (lambda v: 0 <= v < 1, "a number in [0, 1)")


def build_optimizer(config: Mapping[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``config["optimizer"]`` names (default ``sgd``) over ``model``'s parameters.

    Reads ``learning_rate`` and ``weight_decay`` for every optimizer, plus the optimizer's own keys
    (see :data:`OPTIMIZERS` and ``docs/lr_toolkit.md``). Raises ``ValueError`` on an unknown name or
    a bad value.
    """
    name = _optimizer_name(config)
    lr = config_number(config, "learning_rate", DEFAULT_LEARNING_RATES[name], *_POSITIVE)
    return _BUILDERS[name](layer_param_groups(config, model, lr), lr, config)


def _optimizer_name(config: Mapping[str, Any]) -> str:
    """``config["optimizer"]`` in lower case (default ``sgd``); ``ValueError`` if not accepted."""
    name = config.get("optimizer", DEFAULT_OPTIMIZER)
    key = name.lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise TrialConfigError(f"config['optimizer'] is {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    return key


def layer_param_groups(config: Mapping[str, Any], model: nn.Module, lr: float) -> Params:
    """``model``'s parameters as torch parameter groups with per-layer learning rates.

    One group of all parameters unless ``head_lr_multiplier`` (the head gets ``lr * multiplier``,
    the rest ``lr``) or ``layer_lr_decay`` (the head gets ``lr``, the layer ``k`` groups before it
    ``lr * decay**k``) is set. Layers are :func:`layer_groups`.
    """
    multiplier = config.get("head_lr_multiplier")
    decay = config.get("layer_lr_decay")
    if multiplier is not None and decay is not None:
        raise TrialConfigError("config sets both head_lr_multiplier and layer_lr_decay; use one of them")
    if multiplier is None and decay is None:
        return [{"params": list(model.parameters())}]
    layers = layer_groups(model)
    if multiplier is not None:
        factor = config_number(config, "head_lr_multiplier", 1.0, *_POSITIVE)
        scales = [1.0] * (len(layers) - 1) + [factor]
    else:
        factor = config_number(config, "layer_lr_decay", 1.0, lambda v: 0 < v <= 1, "a number in (0, 1]")
        scales = [factor**back for back in reversed(range(len(layers)))]
    return [{"params": params, "lr": lr * scale, "layer": name} for (name, params), scale in zip(layers, scales)]


def layer_groups(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """``(name, parameters)`` per layer, input first, head last.

    A layer is a top-level child module that has parameters; parameters registered on ``model``
    itself form a first layer named ``""``. A parameter shared by several layers counts in the first.
    """
    seen: set[int] = set()

    def fresh(params: Iterator[nn.Parameter]) -> list[nn.Parameter]:
        out = [p for p in params if id(p) not in seen]
        seen.update(id(p) for p in out)
        return out

    candidates = [("", fresh(model.parameters(recurse=False)))]
    candidates += [(name, fresh(child.parameters())) for name, child in model.named_children()]
    layers = [(name, params) for name, params in candidates if params]
    if not layers:
        raise TrialConfigError(f"{type(model).__name__} has no parameters to optimize")
    return layers


def _sgd(params: Params, lr: float, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    momentum = config_number(config, "momentum", DEFAULT_MOMENTUM, *_UNIT_OPEN)
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=bool(config.get("nesterov", False)) and momentum > 0,
        weight_decay=_weight_decay(config, 0.0),
    )


def _weight_decay(config: Mapping[str, Any], default: float) -> float:
    return config_number(config, "weight_decay", default, *_NON_NEGATIVE)


def _adam(params: Params, lr: float, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=_weight_decay(config, 0.0), **_adam_keys(config))


def _adamw(params: Params, lr: float, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=_weight_decay(config, 0.01), **_adam_keys(config))


def _adam_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "betas": (config_number(config, "beta1", 0.9, *_UNIT_OPEN), config_number(config, "beta2", 0.999, *_UNIT_OPEN)),
        "eps": config_number(config, "eps", 1e-8, *_POSITIVE),
        "amsgrad": bool(config.get("amsgrad", False)),
    }


def _numbers(config: Mapping[str, Any], keys: Mapping[str, tuple[float, _Check]]) -> dict[str, float]:
    """``{key: config_number(config, key, default, *check)}`` for ``keys``' (default, check) pairs."""
    return {key: config_number(config, key, default, *check) for key, (default, check) in keys.items()}


def _rmsprop(params: Params, lr: float, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    numbers = _numbers(config, {"alpha": (0.99, _UNIT_OPEN), "eps": (1e-8, _POSITIVE), "momentum": (0.0, _UNIT_OPEN)})
    return torch.optim.RMSprop(params, lr=lr, **numbers, centered=bool(config.get("centered", False)),
                               weight_decay=_weight_decay(config, 0.0))


def _adagrad(params: Params, lr: float, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    numbers = _numbers(config, {"lr_decay": (0.0, _NON_NEGATIVE), "eps": (1e-10, _POSITIVE),
                                "initial_accumulator_value": (0.0, _NON_NEGATIVE)})
    return torch.optim.Adagrad(params, lr=lr, **numbers, weight_decay=_weight_decay(config, 0.0))


_BUILDERS: dict[str, Callable[[Params, float, Mapping[str, Any]], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
    "adagrad": _adagrad,
}


def config_number(
    config: Mapping[str, Any],
    key: str,
    default: float,
    valid: Callable[[float], bool] = lambda _: True,
    expected: str = "a finite number",
) -> float:
    """``config[key]`` (``default`` when absent or None) as a float; ``ValueError`` naming the key
    and ``expected`` when it is not a finite number or fails ``valid``."""
    value = config.get(key)
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not valid(value):
        raise TrialConfigError(f"config[{key!r}] is {value!r}; expected {expected}")
    return float(value)
