"""Workloads: the training functions trials run. Built-in ones (``digits_mlp``, ``digits_cnn``,
``lcbench``) or ``package.module:function``, found through one registry."""

from orchestrator.workloads.registry import (
    BUILTIN_WORKLOADS,
    resolve_lr_range_setup,
    resolve_workload,
)

__all__ = ["BUILTIN_WORKLOADS", "resolve_lr_range_setup", "resolve_workload"]
