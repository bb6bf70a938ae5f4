"""Trials as data-parallel (DDP) jobs: ``resources.workers`` > 1 runs each trial as a Ray Train
``TorchTrainer`` with that many processes (NCCL on GPUs, gloo on CPUs).

Every rank runs the workload; each epoch every rank reports through ``ray.train.report`` and
rank 0's metrics (and checkpoint) become the trial's result, so the searcher, the scheduler and the
MLflow record see a DDP trial like any other. A workload supports DDP with the helpers of
:mod:`orchestrator.training.distributed` (``prepare_model``, ``shard``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from orchestrator.errors import SpecError
from orchestrator.keys import Config, Result
from orchestrator.trial.runner import TrialRuntime, run_trial

if TYPE_CHECKING:
    from orchestrator.spec import StudySpec

TRAIN_LOOP_CONFIG = "train_loop_config"
#: Ray's switch between Ray Train v1 and v2 (read by ``ray.train`` when it is imported).
TRAIN_V2_ENV = "RAY_TRAIN_V2_ENABLED"


def train_v2_enabled() -> bool:
    """Whether Ray Train is v2 in this process, read as Ray reads it: v2 unless
    ``RAY_TRAIN_V2_ENABLED`` is set to something other than ``1``/``true``. stepsize sets it to 0
    before it imports Ray Tune (``orchestrator.run.ray_session``); a value the user set wins."""
    value = os.environ.get(TRAIN_V2_ENV)
    return value is None or value.lower() in ("1", "true")


def require_train_v1(spec: "StudySpec") -> None:
    """Refuse a study with ``resources.workers`` > 1 while Ray Train v2 is switched on: its
    trainers cannot run inside Tune trials. Called before anything is written."""
    if spec.resources.workers <= 1:
        return
    if train_v2_enabled():
        raise SpecError("resources.workers", spec.resources.workers,
                        f"1 while {TRAIN_V2_ENV}={os.environ.get(TRAIN_V2_ENV)} is set: trials with "
                        f"several workers run as Ray Train v1 trainers; unset {TRAIN_V2_ENV} or set it to 0")


def make_ddp_trainable(spec: "StudySpec") -> Any:
    """A Tune trainable that runs each trial as a ``TorchTrainer`` with ``resources.workers``
    processes, each with ``cpus / workers`` CPUs and ``gpu / workers`` GPUs."""
    # Ray Train v1's classes by their own paths: ``ray.train``'s public names switch to v2 when
    # it is imported without RAY_TRAIN_V2_ENABLED=0, and a v2 trainer cannot run inside a Tune trial.
    from ray.air.config import ScalingConfig
    from ray.train.torch.config import TorchConfig
    from ray.train.torch.torch_trainer import TorchTrainer

    require_train_v1(spec)
    workers = spec.resources.workers
    # Each process's share: torch's threads and the device follow it.
    runtime = dataclasses.replace(TrialRuntime.from_spec(spec), cpus=spec.resources.cpus / workers,
                                  gpu=spec.resources.gpu / workers)
    per_worker = {"CPU": spec.resources.cpus / workers, "GPU": spec.resources.gpu / workers}
    use_gpu = spec.resources.gpu > 0
    trainer = TorchTrainer(
        _worker_loop(runtime),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker={k: v for k, v in per_worker.items() if v > 0},
            trainer_resources={"CPU": 0},  # the coordinator only relays results
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
    )
    base = trainer.as_trainable()

    class DDPTrial(base):  # type: ignore[misc, valid-type]
        """The searcher's flat configuration becomes the workers' ``train_loop_config``."""

        def setup(self, config: dict[str, Any], **kwargs: Any) -> None:
            self.config = {TRAIN_LOOP_CONFIG: dict(config)}
            super().setup(config, **kwargs)

    DDPTrial.__name__ = "DDPTrial"
    return DDPTrial


def _worker_loop(runtime: Any) -> Any:
    def loop(config: dict[str, Any]) -> None:
        """One rank of a DDP trial: the same trial function as a plain trial, reporting to Train."""
        import ray
        import torch
        from ray import train

        rank = train.get_context().get_world_rank()
        if runtime.gpu > 0 and torch.cuda.is_available():
            torch.cuda.set_device(ray.train.torch.get_device())  # "cuda" is this rank's GPU
        gpu_ids = ",".join(str(i) for i in ray.get_gpu_ids())
        node_id = ray.get_runtime_context().get_node_id()

        def report(metrics: dict[str, Any], folder: str | None = None) -> None:
            # Every rank reports (Train waits for all); rank 0's result and checkpoint are the trial's.
            checkpoint = train.Checkpoint.from_directory(folder) if folder and rank == 0 else None
            train.report({**metrics, Result.GPU_IDS: gpu_ids, Result.NODE_ID: node_id,
                          Result.WORLD_SIZE: train.get_context().get_world_size()}, checkpoint=checkpoint)

        checkpoint = train.get_checkpoint()  # set when Tune retries the trial after a failure
        restore_from = checkpoint.to_directory() if checkpoint is not None else config.get(Config.RESUME_FROM)
        run_trial(config, runtime, report, restore_from=restore_from, checkpointing=True)

    return loop

