"""Training building blocks shared by built-in and user workloads."""

from orchestrator.training.optimizers import build_optimizer

__all__ = ["build_optimizer"]
