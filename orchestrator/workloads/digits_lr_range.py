"""LR range test setups for the built-in digits workloads (``digits_mlp``, ``digits_cnn``).

Each follows the user-workload contract of :func:`orchestrator.lr_finder.run_lr_range_for_workload`:
``setup(config, options, seed) -> (model, loss_fn, batches)``. The model, its initialisation and
the batch order are the ones a trial of the workload with the same seed starts from: the same
split (``options["split_seed"]``), ``torch.manual_seed(seed)`` before the model is built, and the
first epoch's permutation drawn from a generator seeded with ``seed``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from orchestrator.workloads.digits import DEFAULT_BATCH_SIZE, build_model, load_digits_split


def digits_lr_range_setup(
    config: Mapping[str, Any], options: Mapping[str, Any], seed: int, *, kind: str = "cnn"
) -> tuple[nn.Module, nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A fresh ``kind`` (``mlp`` or ``cnn``) model, cross-entropy, and one epoch of training batches
    of ``config["batch_size"]`` (default 64)."""
    if kind not in ("mlp", "cnn"):
        raise ValueError(f"kind is {kind!r}; expected mlp or cnn")
    batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}; expected at least 1")
    x_tr, y_tr, _, _ = load_digits_split(int(options.get("split_seed", 0)))
    torch.manual_seed(seed)
    model = build_model(kind, options)
    order = torch.randperm(x_tr.shape[0], generator=torch.Generator().manual_seed(seed))
    batches = [
        (x_tr[order[start : start + batch_size]], y_tr[order[start : start + batch_size]])
        for start in range(0, x_tr.shape[0], batch_size)
    ]
    return model, nn.CrossEntropyLoss(), batches


def digits_cnn_lr_range_setup(config: Mapping[str, Any], options: Mapping[str, Any], seed: int):
    """:func:`digits_lr_range_setup` for ``digits_cnn``."""
    return digits_lr_range_setup(config, options, seed, kind="cnn")


def digits_mlp_lr_range_setup(config: Mapping[str, Any], options: Mapping[str, Any], seed: int):
    """:func:`digits_lr_range_setup` for ``digits_mlp``."""
    return digits_lr_range_setup(config, options, seed, kind="mlp")
