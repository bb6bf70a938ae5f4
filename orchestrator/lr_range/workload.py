"""The LR range test on a study's workload, through the workload's LR range setup."""

from __future__ import annotations

from typing import Any, Mapping

from orchestrator.errors import LRRangeError
from orchestrator.lr_range.ramp import lr_range_test
from orchestrator.lr_range.result import LRRangeResult
from orchestrator.workloads.registry import resolve_lr_range_setup


def run_lr_range_for_workload(
    workload_name: str,
    config: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    **ramp_kwargs: Any,
) -> LRRangeResult:
    """Run the range test on a study's workload.

    ``config`` is one configuration of the study (its ``batch_size``, ``momentum``, ``nesterov``,
    ``weight_decay``...; its ``learning_rate`` is ignored), ``options`` the study's
    ``workload_options``, ``seed`` the seed the setup draws the model and batch order from.
    ``ramp_kwargs`` go to :func:`lr_range_test` (``min_lr``, ``max_lr``, ``num_steps``, ``mode``,
    ``smoothing``, ``divergence_threshold``, ``step_fn``, ``device``, ``optimizer``).

    The setup (see :func:`orchestrator.workloads.resolve_lr_range_setup`) returns ``(model, loss_fn, batches)`` or
    ``(model, loss_fn, batches, optimizer)``; without an optimizer from the setup or in
    ``ramp_kwargs``, :func:`orchestrator.build_optimizer` builds it from ``config``.
    """
    setup = resolve_lr_range_setup(workload_name)
    options = dict(options or {})
    config = dict(config)
    import torch

    torch.manual_seed(int(seed))
    built = setup(config, options, int(seed))
    if not isinstance(built, (tuple, list)) or len(built) not in (3, 4):
        raise LRRangeError(
            f"{workload_name} LR range setup returned {type(built).__name__}; expected (model, loss_fn, batches) "
            "or (model, loss_fn, batches, optimizer)"
        )
    model, loss_fn, batches = built[:3]
    optimizer = ramp_kwargs.pop("optimizer", built[3] if len(built) == 4 else None)
    if optimizer is None:
        optimizer = config
    result = lr_range_test(model, loss_fn, batches, optimizer, **ramp_kwargs)
    result.context.update({
        "workload": workload_name,
        "seed": int(seed),
        "config": {k: v for k, v in config.items() if k != "learning_rate"},
    })
    return result
