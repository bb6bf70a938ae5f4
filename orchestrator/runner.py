"""Run a study: Optuna proposes, Ray Tune runs the trials, the scheduler stops poor ones early.

Only this driver talks to the Optuna storage; trials report to Ray Tune and nothing else.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import TextIO

from orchestrator.spec import StudySpec
from orchestrator.study import StudySummary, create_study, refuse_existing_study, summarize
from orchestrator.workloads import resolve_workload

# Tune's per-trial CSV/JSON/TensorBoard files are not needed: Optuna holds the study and MLflow
# the record. Skipping them removes file writes from every result.
_TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_THRESHOLD_S": "30",
    "RAY_TRAIN_V2_ENABLED": "0",
}


def ensure_ray(address: str | None, verbose: bool = False) -> None:
    """Connect to the Ray cluster at ``address`` or start one on this machine (idempotent)."""
    import ray

    if ray.is_initialized():
        return
    ray.init(
        address=address,
        runtime_env=_worker_env(),
        include_dashboard=False if address is None else None,
        logging_level=logging.INFO if verbose else logging.ERROR,
        log_to_driver=verbose,
        configure_logging=True,
    )


def _worker_env() -> dict:
    """Workers import workloads as the driver does: its working folder and PYTHONPATH first."""
    paths = [os.getcwd()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def default_concurrency(spec: StudySpec) -> int:
    """As many concurrent trials as the cluster's CPUs (and GPUs, when trials use them) allow."""
    import ray

    resources = ray.cluster_resources()
    limit = math.floor(resources.get("CPU", 1) / spec.resources.cpus + 1e-9)
    if spec.resources.gpu > 0:
        limit = min(limit, math.floor(resources.get("GPU", 0) / spec.resources.gpu + 1e-9))
    return max(1, min(limit, spec.budget.trials))


def launch(spec: StudySpec, quiet: bool = False, verbose: bool = False, stream: TextIO | None = None) -> StudySummary:
    """Create ``spec``'s study and run it to its budget; return the summary.

    Everything is validated (spec, workload import, free study name) before any store is
    written. ``quiet`` drops the live progress view; ``verbose`` keeps Ray's own logs.
    """
    resolve_workload(spec.workload)  # a missing module fails here, before anything is created
    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    _quiet_libraries(verbose)

    from ray import tune

    from orchestrator.lr_bounds import auto_lr_bounds, lr_range_summary, save_lr_range
    from orchestrator.progress import ProgressView
    from orchestrator.samplers import grid_size
    from orchestrator.schedulers import build_trial_scheduler
    from orchestrator.searcher import FailureRelay, OptunaStudySearcher
    from orchestrator.tracking import start_recording
    from orchestrator.trainable import make_trainable

    ensure_ray(spec.address, verbose)
    lr_record = None
    if spec.lr_bounds == "auto":
        refuse_existing_study(spec)  # before spending the range test on a name that is taken
        spec, lr_record = auto_lr_bounds(spec)
        if not quiet:
            print(lr_range_summary(lr_record), file=stream or sys.stderr)
    study = create_study(spec)
    if lr_record is not None:
        save_lr_range(study, spec, lr_record, _results_path(spec.results_dir))
    trials = spec.budget.trials
    if spec.sampler.name == "grid":
        trials = min(trials, grid_size(spec))  # each grid point once, even with trials running
    searcher = OptunaStudySearcher(study, spec, max_new_trials=trials)
    recorder = start_recording(study, spec)  # MLflow: parent run now, a child run per trial
    # The recorder's callback comes after FailureRelay: a failed trial is told before it is recorded.
    callbacks: list[tune.Callback] = [FailureRelay(searcher), recorder.callback]
    if not quiet:
        callbacks.append(ProgressView(searcher.progress, spec.objective.metric, stream or sys.stderr))
    tuner = tune.Tuner(
        make_trainable(spec),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=build_trial_scheduler(spec),
            num_samples=trials,
            max_concurrent_trials=spec.concurrency or default_concurrency(spec),
            reuse_actors=True,
            time_budget_s=spec.budget.time_limit_s,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=_results_path(spec.results_dir),
            stop={"training_iteration": spec.budget.max_epochs},
            callbacks=callbacks,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    try:
        tuner.fit()
    finally:
        searcher.end_live_trials()
        recorder.finish(study, spec)
    return summarize(study, spec)


def _results_path(results_dir: str) -> str:
    if "://" in results_dir:
        return results_dir
    path = Path(os.path.expanduser(results_dir)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _quiet_libraries(verbose: bool) -> None:
    if verbose:
        return
    for name in ("ray", "ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)
