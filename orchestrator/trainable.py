"""The Ray Tune trainable every trial runs: it sets up the process and calls the workload.

Trials talk to Ray Tune only (``tune.report``); the driver turns their reports into Optuna
intermediate values, scheduler decisions and records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ray import tune

from orchestrator.spec import StudySpec

TRIAL_NUMBER_KEY = "_trial_number"
RESUME_KEY = "_resume_from"  # a checkpoint folder a resumed trial continues from
FAILED_KEY = "trial_failed"  # a result saying the workload raised; ``error`` holds the text


@dataclass(frozen=True)
class TrialRuntime:
    """What every trial of a study shares, shipped once with the trainable."""

    workload: str
    max_epochs: int
    seed: int
    cpus: float
    gpu: float
    metric: str = "val_loss"
    mode: str = "min"
    divergence_factor: float | None = 4.0
    lr_scaling_rule: str = "none"
    lr_reference_batch_size: int = 256
    retry_errors: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: StudySpec) -> "TrialRuntime":
        return cls(
            workload=spec.workload,
            max_epochs=spec.budget.max_epochs,
            seed=spec.seed,
            cpus=spec.resources.cpus,
            gpu=spec.resources.gpu,
            metric=spec.objective.metric,
            mode=spec.objective.mode,
            divergence_factor=spec.divergence.loss_factor,
            lr_scaling_rule=spec.lr_scaling.rule,
            lr_reference_batch_size=spec.lr_scaling.reference_batch_size,
            retry_errors=spec.failures.retry_errors,
            options=dict(spec.workload_options),
        )


def apply_lr_scaling(params: dict[str, Any], rule: str, reference_batch_size: int) -> dict[str, Any]:
    """The trial's params with ``learning_rate`` made effective for its batch size.

    The searched value is the base LR at ``reference_batch_size``; it is kept as
    ``base_learning_rate``. A trial without ``batch_size`` trains at the reference size.
    """
    if rule == "none" or "learning_rate" not in params:
        return params
    from orchestrator.training.lr_scaling import scaled_learning_rate

    base = params["learning_rate"]
    batch = int(params.get("batch_size", reference_batch_size))
    return {**params, "base_learning_rate": base,
            "learning_rate": scaled_learning_rate(base, batch, rule, reference_batch_size)}


def run_trial(
    config: dict[str, Any],
    runtime: TrialRuntime,
    report: Callable[..., None],
    restore_from: str | None = None,
    checkpointing: bool = False,
) -> None:
    """Run one trial of ``runtime``'s workload with ``config``, sending each epoch to ``report``.

    With ``checkpointing``, ``report(metrics, folder)`` also gets a checkpoint folder each epoch
    (when the workload registered its state); ``restore_from`` is a checkpoint to continue from.
    A workload that raises ends the trial with a ``trial_failed`` result carrying the error,
    unless ``runtime.retry_errors`` lets the error reach Ray Tune (which retries the trial).
    """
    import traceback

    import torch

    from orchestrator.context import TrialContext
    from orchestrator.divergence import DIVERGED_KEY, PENALTY_KEY, DivergenceGuard, TrialDiverged
    from orchestrator.workloads import resolve_workload

    number = int(config.get(TRIAL_NUMBER_KEY, 0))
    params = {k: v for k, v in config.items() if not k.startswith("_")}
    params = apply_lr_scaling(params, runtime.lr_scaling_rule, runtime.lr_reference_batch_size)
    torch.set_num_threads(max(1, int(runtime.cpus)))
    use_cuda = runtime.gpu > 0 and torch.cuda.is_available()
    context = TrialContext(
        number=number,
        max_epochs=runtime.max_epochs,
        seed=runtime.seed + number,
        options=runtime.options,
        cpus=runtime.cpus,
        device="cuda" if use_cuda else "cpu",
        _sink=report,
        guard=DivergenceGuard(loss_factor=runtime.divergence_factor),
        checkpointing=checkpointing,
        restore_from=restore_from,
    )
    try:
        resolve_workload(runtime.workload)(params, context)
    except TrialDiverged as diverged:
        # Stop now, and say so: the driver ranks the trial as bad (PRUNED with a penalty value),
        # so the sampler learns to avoid its region.
        penalty = context.guard.penalty() if runtime.mode == "min" else 0.0
        report({
            "epoch": diverged.epoch,
            runtime.metric: penalty,
            DIVERGED_KEY: 1.0,
            PENALTY_KEY: penalty,
            "diverged_loss": diverged.loss,
            "diverged_reason": diverged.reason,
        })
    except Exception:
        if runtime.retry_errors:
            raise
        # Told FAIL with this text by the driver; not retried: the same code fails the same way.
        report({"epoch": context.epoch, FAILED_KEY: 1.0, "error": traceback.format_exc()[-4000:]})


def make_trainable(spec: StudySpec) -> Any:
    """A Ray Tune function trainable for ``spec``, with its per-trial resources attached."""
    if spec.resources.workers > 1:  # each trial a DDP job of that many processes (Ray Train)
        from orchestrator.training.ddp import make_ddp_trainable

        return make_ddp_trainable(spec)
    runtime = TrialRuntime.from_spec(spec)

    def trial(config: dict[str, Any]) -> None:
        import ray

        gpu_ids = ",".join(str(i) for i in ray.get_gpu_ids())
        node_id = ray.get_runtime_context().get_node_id()

        def report(metrics: dict[str, Any], folder: str | None = None) -> None:
            checkpoint = tune.Checkpoint.from_directory(folder) if folder else None
            tune.report({**metrics, "gpu_ids": gpu_ids, "node_id": node_id}, checkpoint=checkpoint)

        run_trial(config, runtime, report, restore_from=_restore_folder(config), checkpointing=True)

    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpu}
    return tune.with_resources(trial, resources)


def _restore_folder(config: dict[str, Any]) -> str | None:
    """Where this trial continues from: Ray Tune's checkpoint when Tune retries the trial after
    its worker died, else the checkpoint ``stepsize resume`` found for it, else nowhere."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        return checkpoint.to_directory()
    folder = config.get(RESUME_KEY)
    return folder if folder and os.path.isdir(folder) else None
