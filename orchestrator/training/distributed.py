"""Data-parallel helpers for workloads: inside a DDP trial (``resources.workers`` > 1) they wrap
the model in ``DistributedDataParallel`` and give each rank its share of an epoch; in a plain trial
they do nothing. torch only (``orchestrator.trial.ddp`` runs the trial as a Ray Train job)."""

from __future__ import annotations

from typing import Any


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a DDP job."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def prepare_model(model: Any) -> Any:
    """``model`` wrapped in ``DistributedDataParallel`` inside a DDP job (after moving it to its
    device); ``model`` itself otherwise."""
    _, size = world()
    if size <= 1:
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def shard(order: Any) -> Any:
    """This rank's share of ``order`` (a permutation of sample indices): every rank gets the same
    number, so all ranks run the same number of steps (DDP needs them in lockstep)."""
    rank, size = world()
    if size <= 1:
        return order
    per_rank = len(order) // size
    return order[rank::size][:per_rank]
