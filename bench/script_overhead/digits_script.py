"""The digits MLP workload as a training script, for the script-overhead benchmark: the very same
training loop as the function workload (``orchestrator.workloads.digits.train_mlp``), with its
reports and checkpoints going through the script reporting API, so the two arms differ only in
the path (a subprocess per trial, a pipe per report, a checkpoint folder per epoch)."""

import shutil
import sys
import time

T0 = time.perf_counter()

from orchestrator.integrations.script import checkpoint_dir, config, report, trial_info  # noqa: E402
from orchestrator.trial.context import TrialContext  # noqa: E402
from orchestrator.workloads.digits import train_mlp  # noqa: E402

IMPORTED_S = time.perf_counter() - T0


def _sink(metrics: dict, folder: str | None = None) -> None:
    if folder is not None:
        shutil.copytree(folder, checkpoint_dir(), dirs_exist_ok=True)
    metrics = {k: v for k, v in metrics.items() if k != "epoch"}
    report(epoch=None, import_s=IMPORTED_S, **metrics)


if __name__ == "__main__":
    info = trial_info()
    trial = TrialContext(number=info["number"], max_epochs=info["max_epochs"], seed=info["seed"],
                         options=info["options"], _sink=_sink, checkpointing=True)
    train_mlp(config(), trial)
    sys.exit(0)
