"""One trial inside a worker process: set the process up, call the workload, turn how it ended
into a result.

The same function runs a plain trial (:mod:`~orchestrator.trial.trainable`) and every rank of a
DDP trial (:mod:`~orchestrator.trial.ddp`); only where its reports go differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from orchestrator.keys import Config, Result
from orchestrator.training.lr_scaling import apply_lr_scaling

if TYPE_CHECKING:
    from orchestrator.spec import StudySpec
    from orchestrator.workloads.script import ScriptWorkload


@dataclass(frozen=True)
class TrialRuntime:
    """What every trial of a study shares, shipped once with the trainable."""

    workload: "str | ScriptWorkload"
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
    def from_spec(cls, spec: "StudySpec") -> "TrialRuntime":
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


def trial_params(config: dict[str, Any], runtime: TrialRuntime) -> dict[str, Any]:
    """What the workload gets: the configuration without stepsize's own keys, its learning rate
    made effective for its batch size when ``lr_scaling`` is on."""
    params = {k: v for k, v in config.items() if not k.startswith(Config.PRIVATE_PREFIX)}
    return apply_lr_scaling(params, runtime.lr_scaling_rule, runtime.lr_reference_batch_size)


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

    from orchestrator.errors import TrialDiverged
    from orchestrator.trial.context import TrialContext
    from orchestrator.trial.divergence import DivergenceGuard
    from orchestrator.workloads.registry import resolve_workload

    number = int(config.get(Config.TRIAL_NUMBER, 0))
    params = trial_params(config, runtime)
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
            Result.EPOCH: diverged.epoch,
            runtime.metric: penalty,
            Result.DIVERGED: 1.0,
            Result.DIVERGENCE_PENALTY: penalty,
            Result.DIVERGED_LOSS: diverged.loss,
            Result.DIVERGED_REASON: diverged.reason,
        })
    except Exception:
        if runtime.retry_errors:
            raise
        # Told FAIL with this text by the driver; not retried: the same code fails the same way.
        report({Result.EPOCH: context.epoch, Result.TRIAL_FAILED: 1.0, Result.ERROR: traceback.format_exc()[-4000:]})
