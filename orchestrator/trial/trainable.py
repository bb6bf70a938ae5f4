"""The Ray Tune trainable every trial runs: a function trainable with the trial's resources that
calls :func:`~orchestrator.trial.runner.run_trial` and reports through ``ray.tune.report``.

Trials talk to Ray Tune only; the driver turns their reports into Optuna intermediate values,
scheduler decisions and records.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orchestrator.keys import Config, Result
from orchestrator.trial.runner import TrialRuntime, run_trial

if TYPE_CHECKING:
    from orchestrator.spec import StudySpec


def make_trainable(spec: "StudySpec") -> Any:
    """A Ray Tune trainable for ``spec``, with its per-trial resources attached (a Ray Train
    DDP job per trial when ``resources.workers`` > 1)."""
    if spec.resources.workers > 1:
        from orchestrator.trial.ddp import make_ddp_trainable

        return make_ddp_trainable(spec)
    from ray import tune

    runtime = TrialRuntime.from_spec(spec)

    def trial(config: dict[str, Any]) -> None:
        import ray

        gpu_ids = ",".join(str(i) for i in ray.get_gpu_ids())
        node_id = ray.get_runtime_context().get_node_id()

        def report(metrics: dict[str, Any], folder: str | None = None) -> None:
            checkpoint = tune.Checkpoint.from_directory(folder) if folder else None
            tune.report({**metrics, Result.GPU_IDS: gpu_ids, Result.NODE_ID: node_id}, checkpoint=checkpoint)

        run_trial(config, runtime, report, restore_from=_restore_folder(config), checkpointing=True)

    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpu}
    return tune.with_resources(trial, resources)


def _restore_folder(config: dict[str, Any]) -> str | None:
    """Where this trial continues from: Ray Tune's checkpoint when Tune retries the trial after
    its worker died, else the checkpoint ``stepsize resume`` found for it, else nowhere."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        return checkpoint.to_directory()
    folder = config.get(Config.RESUME_FROM)
    return folder if folder and os.path.isdir(folder) else None
