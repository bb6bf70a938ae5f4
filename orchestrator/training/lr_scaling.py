"""Scale a learning rate with the batch size: ``base_lr * f(batch_size / reference_batch_size)``.

``linear`` (f(r) = r) keeps the update per example constant as the batch grows (Goyal et al., 2017);
``sqrt`` (f(r) = sqrt(r)) keeps the gradient noise constant, the usual choice for Adam-style
optimizers; ``none`` leaves the rate as it is.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from orchestrator.errors import TrialConfigError
from orchestrator.keys import Config

SCALING_RULES: dict[str, Callable[[float], float]] = {
    "none": lambda ratio: 1.0,
    "linear": lambda ratio: ratio,
    "sqrt": math.sqrt,
}
DEFAULT_REFERENCE_BATCH_SIZE = 256


def scaled_learning_rate(
    base_lr: float, batch_size: int, rule: str = "none", reference_batch_size: int = DEFAULT_REFERENCE_BATCH_SIZE
) -> float:
    """The learning rate for ``batch_size`` when ``base_lr`` suits ``reference_batch_size``.

    ``rule`` is one of ``none``, ``linear``, ``sqrt``; :class:`~orchestrator.errors.TrialConfigError` (a
    ``ValueError``) on an unknown rule, a
    non-positive rate or a batch size that is not a positive integer.
    """
    if rule not in SCALING_RULES:
        raise TrialConfigError(f"LR scaling rule is {rule!r}; expected one of {', '.join(SCALING_RULES)}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, numbers.Real) or not 0 < base_lr < math.inf:
        raise TrialConfigError(f"base learning rate is {base_lr!r}; expected a positive number")
    for name, value in (("batch_size", batch_size), ("reference_batch_size", reference_batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise TrialConfigError(f"{name} is {value!r}; expected a positive integer")
    return float(base_lr) * SCALING_RULES[rule](batch_size / reference_batch_size)


def apply_lr_scaling(params: dict[str, Any], rule: str, reference_batch_size: int) -> dict[str, Any]:
    """A trial's params with ``learning_rate`` made effective for its batch size.

    The searched value is the base LR at ``reference_batch_size``; it is kept as
    ``base_learning_rate``. A trial without ``batch_size`` trains at the reference size.
    """
    if rule == "none" or "learning_rate" not in params:
        return params
    base = params["learning_rate"]
    batch = int(params.get("batch_size", reference_batch_size))
    return {**params, Config.BASE_LR: base,
            "learning_rate": scaled_learning_rate(base, batch, rule, reference_batch_size)}


LR_SCALING_KEY = "lr_scaling"  # in a copyable configuration: the rule that made learning_rate


def scaling_note(rule: str, base_lr: float, reference_batch_size: int) -> str:
    """``sqrt: base 0.1 at batch 256``: how a configuration's ``learning_rate`` was made."""
    return f"{rule}: base {base_lr:.6g} at batch {reference_batch_size}"


def copyable_config(params: dict[str, Any], rule: str, reference_batch_size: int) -> dict[str, Any]:
    """A trial's params as a user copies them to train with: what the workload received
    (``learning_rate`` the effective rate for ``batch_size``, the searched one as
    ``base_learning_rate``) plus ``lr_scaling`` naming the rule; unchanged when scaling is off."""
    scaled = apply_lr_scaling(dict(params), rule, reference_batch_size)
    if Config.BASE_LR in scaled:
        scaled[LR_SCALING_KEY] = scaling_note(rule, scaled[Config.BASE_LR], reference_batch_size)
    return scaled
