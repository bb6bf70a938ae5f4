"""Build a ``torch.optim`` optimizer from a trial's configuration."""

from __future__ import annotations

from typing import Any, Mapping

import torch

DEFAULT_LR = 0.05
DEFAULT_MOMENTUM = 0.9


def build_optimizer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD over ``model``'s parameters with the configuration's ``learning_rate``, ``momentum``,
    ``nesterov`` and ``weight_decay`` (defaults 0.05, 0.9, False, 0)."""
    momentum = float(config.get("momentum", DEFAULT_MOMENTUM))
    return torch.optim.SGD(
        model.parameters(),
        lr=float(config.get("learning_rate", DEFAULT_LR)),
        momentum=momentum,
        nesterov=bool(config.get("nesterov", False)) and momentum > 0,
        weight_decay=float(config.get("weight_decay", 0.0)),
    )
