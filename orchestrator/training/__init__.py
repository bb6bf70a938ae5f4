"""Training building blocks shared by built-in and user workloads: optimizers (with per-layer
learning rates), learning-rate schedules and learning-rate scaling with the batch size."""

from orchestrator.training.lr_scaling import SCALING_RULES, scaled_learning_rate
from orchestrator.training.optimizers import OPTIMIZERS, build_optimizer, layer_groups, layer_param_groups
from orchestrator.training.schedules import SCHEDULES, LRSchedule, build_scheduler

__all__ = [
    "OPTIMIZERS",
    "SCALING_RULES",
    "SCHEDULES",
    "LRSchedule",
    "build_optimizer",
    "build_scheduler",
    "layer_groups",
    "layer_param_groups",
    "scaled_learning_rate",
]
