"""One trial inside a worker process: set the process up, call the workload, turn how it ended
into a result.

The same function runs a plain trial (:mod:`~orchestrator.trial.trainable`) and every rank of a
DDP trial (:mod:`~orchestrator.trial.ddp`); only where its reports go differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from orchestrator.keys import Config, Result
from orchestrator.training.lr_scaling import apply_lr_scaling
from orchestrator.trial.limits import Breach, TrialLimits, Watchdog

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
    limits: TrialLimits = TrialLimits()

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
            limits=TrialLimits.from_spec(spec.limits),
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
    import torch

    from orchestrator.errors import TrialLimitExceeded
    from orchestrator.trial.context import TrialContext
    from orchestrator.trial.divergence import DivergenceGuard

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

    def limit_result(breach: Breach, exiting: bool = False) -> dict[str, Any]:
        penalty = context.guard.penalty() if runtime.mode == "min" else 0.0
        return {Result.EPOCH: context.epoch, Result.TRIAL_FAILED: 1.0, Result.ERROR: breach.reason,
                Result.LIMIT_EXCEEDED: 1.0, Result.LIMIT_REASON: breach.reason, Result.LIMIT_EXIT: float(exiting),
                Result.LIMIT_PEAK_BYTES: float(max(breach.memory_bytes, watchdog.peak_memory)),
                Result.DIVERGENCE_PENALTY: penalty}

    def on_stuck(breach: Breach) -> None:
        # The trial's thread is stuck in C: report from here, then the process has to go.
        exiting = runtime.limits.exit_when_stuck
        try:
            report(limit_result(breach, exiting))
        except BaseException:  # noqa: BLE001 - Ray Tune ends a stopped trial's report with SystemExit
            pass
        if exiting:  # a reused worker: nobody else ends this process
            os._exit(1)

    watchdog = Watchdog(number, runtime.limits, on_stuck=on_stuck).start()
    try:
        try:
            _call_workload(runtime, params, context, report, watchdog)
        finally:
            watchdog.finish()
    except TrialLimitExceeded:
        watchdog.finish()
        if watchdog.breach is not None and watchdog.claim():
            report(limit_result(watchdog.breach))


def _call_workload(runtime: TrialRuntime, params: dict[str, Any], context: Any, report: Callable[..., None],
                   watchdog: Watchdog) -> None:
    """Call the workload; turn how it ended into a result (a limit breach propagates)."""
    import traceback

    from orchestrator.errors import TrialDiverged, TrialLimitExceeded
    from orchestrator.workloads.registry import resolve_workload

    try:
        resolve_workload(runtime.workload)(params, context)
    except TrialLimitExceeded:
        raise
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
    except SystemExit as exited:
        if context.stopped_by_tune(exited):
            raise  # Ray Tune stopping the trial inside report(): it must reach Ray Tune
        if exited.code not in (None, 0):  # sys.exit() or sys.exit(0) ends the trial as a return would
            # The workload's own sys.exit(N): a FAIL with its code, not a dead worker for Ray to retry.
            report({Result.EPOCH: context.epoch, Result.TRIAL_FAILED: 1.0,
                    Result.ERROR: traceback.format_exc()[-3500:] + workload_exit_text(exited)})
    except Exception:
        if watchdog.breach is not None:  # the workload wrapped the watchdog's exception in its own
            raise TrialLimitExceeded(watchdog.breach.reason) from None
        if runtime.retry_errors:
            raise
        # Told FAIL with this text by the driver; not retried: the same code fails the same way.
        report({Result.EPOCH: context.epoch, Result.TRIAL_FAILED: 1.0, Result.ERROR: traceback.format_exc()[-4000:]})


def workload_exit_text(exited: SystemExit) -> str:
    """The last line of a trial that called ``sys.exit(N)``: what it did and what to do instead."""
    return (f"\nSystemExit: the workload called sys.exit({exited.code!r}); the trial is recorded as failed with exit "
            "code " + repr(exited.code) + " and not retried. End a trial by returning, or raise an exception "
            "that says what went wrong.")
