"""Training building blocks shared by built-in and user workloads (torch only): optimizers with
per-layer learning rates, learning-rate schedules, learning-rate scaling with the batch size and
data-parallel helpers. Names load on first use: importing the package does not import torch."""

from orchestrator._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "orchestrator.training.lr_scaling": ("SCALING_RULES", "apply_lr_scaling", "scaled_learning_rate"),
    "orchestrator.training.optimizers": ("OPTIMIZERS", "build_optimizer", "layer_groups", "layer_param_groups"),
    "orchestrator.training.schedules": ("SCHEDULES", "LRSchedule", "build_scheduler"),
    "orchestrator.training.distributed": ("prepare_model", "shard"),
})
