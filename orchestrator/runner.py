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
    # Trials with several DDP workers run as Ray Train (v1) trainers inside Tune trials.
    "RAY_TRAIN_V2_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    # Resume reads the Optuna storage and the trials' checkpoints, not Tune's experiment state:
    # snapshot it rarely.
    "TUNE_GLOBAL_CHECKPOINT_S": "300",
    # A failed trial's last result carries the error, not the objective.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}


def ensure_ray(address: str | None, verbose: bool = False) -> None:
    """Connect to the Ray cluster at ``address`` or start one on this machine (idempotent)."""
    import ray

    if ray.is_initialized():
        return
    from orchestrator.ray_auth import prepare_driver_auth

    prepare_driver_auth(address)  # a token given for a remote cluster turns token auth on
    ray.init(
        address=address,
        runtime_env=_worker_env(),
        include_dashboard=False if address is None else None,
        logging_level=logging.INFO if verbose else logging.ERROR,
        log_to_driver=verbose,
        configure_logging=True,
    )


def _worker_env() -> dict:
    """Workers import workloads as the driver does: its working folder and PYTHONPATH first; on a
    cluster started apart from the driver they also need its Ray Train version (v1)."""
    paths = [os.getcwd()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
                         "RAY_TRAIN_V2_ENABLED": os.environ.get("RAY_TRAIN_V2_ENABLED", "0")}}


def default_concurrency(spec: StudySpec) -> int:
    """As many concurrent trials as the cluster's CPUs (and GPUs, when trials use them) allow."""
    import ray

    resources = ray.cluster_resources()
    limit = math.floor(resources.get("CPU", 1) / spec.resources.cpus + 1e-9)
    if spec.resources.gpu > 0:
        limit = min(limit, math.floor(resources.get("GPU", 0) / spec.resources.gpu + 1e-9))
    return max(1, min(limit, spec.budget.trials))


def launch(
    spec: StudySpec,
    quiet: bool = False,
    verbose: bool = False,
    stream: TextIO | None = None,
    new: bool = False,
) -> StudySummary:
    """Create ``spec``'s study and run it to its budget; return the summary.

    Everything is validated (spec, workload import, free study name) before any store is
    written. ``quiet`` drops the live progress view; ``verbose`` keeps Ray's own logs; ``new``
    names the study after the first free suffix (``NAME-2``...) when ``NAME`` is taken.
    """
    _prepare(verbose)  # before anything imports Ray Tune (it reads some settings at import)
    from orchestrator.resume import claim_driver
    from orchestrator.study import next_free_name
    from orchestrator.training.ddp import require_train_v1

    resolve_workload(spec.workload)  # a missing module fails here, before anything is created
    require_train_v1(spec)
    if new:
        spec = spec.with_overrides(name=next_free_name(spec))
    refuse_existing_study(spec)

    from orchestrator.lr_bounds import auto_lr_bounds, lr_range_summary, save_lr_range
    from orchestrator.samplers import grid_size

    ensure_ray(spec.address, verbose)
    lr_record = None
    if spec.lr_bounds == "auto":
        spec, lr_record = auto_lr_bounds(spec)
        if not quiet:
            print(lr_range_summary(lr_record), file=stream or sys.stderr)
    study = create_study(spec)
    claim_driver(study)
    if lr_record is not None:
        save_lr_range(study, spec, lr_record, _results_path(spec.results_dir))
    trials = spec.budget.trials
    if spec.sampler.name == "grid":
        trials = min(trials, grid_size(spec))  # each grid point once, even with trials running
    return _run(study, spec, new_trials=trials, quiet=quiet, verbose=verbose, stream=stream)


def resume(
    name: str,
    storage: str,
    trials: int | None = None,
    address: str | None = None,
    quiet: bool = False,
    verbose: bool = False,
    stream: TextIO | None = None,
) -> StudySummary:
    """Continue study ``name`` from its storage: trials that were running run again (from their
    last checkpoint when Ray's results folder still has it), then new trials up to the budget;
    ``trials`` raises the budget to extend a finished study."""
    _prepare(verbose)  # before anything imports Ray Tune (it reads some settings at import)
    from orchestrator.resume import claim_driver, plan_resume, release_driver
    from orchestrator.study import load_study, store_spec
    from orchestrator.training.ddp import require_train_v1

    study, spec = load_study(name, storage)
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    if trials is not None and trials <= finished:
        from orchestrator.errors import SpecError

        raise SpecError("--trials", trials, f"a total above the {finished} trials study {name!r} already finished (it extends the study to that many trials)")
    spec = spec.with_overrides(trials=trials, address=address, storage=storage)
    resolve_workload(spec.workload)
    require_train_v1(spec)
    claim_driver(study)
    plan = plan_resume(study, spec, _study_folder(spec))
    store_spec(study, spec)
    out = stream or sys.stderr
    if not quiet:
        print(plan.describe(name), file=out)
    if not plan.tickets and plan.new_trials == 0:
        release_driver(study)
        if not quiet:
            print(f"study {name!r} has reached its budget of {spec.budget.trials} trials; "
                  f"pass --trials N (above {plan.finished}) to extend it", file=out)
        return summarize(study, spec)
    ensure_ray(spec.address, verbose)
    return _run(study, spec, new_trials=plan.new_trials, quiet=quiet, verbose=verbose, stream=stream, plan=plan)


def _prepare(verbose: bool) -> None:
    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    _quiet_libraries(verbose)


def _run(study, spec: StudySpec, new_trials: int, quiet: bool, verbose: bool, stream: TextIO | None, plan=None) -> StudySummary:
    """Run ``study`` through Ray Tune: resumed trials first, then ``new_trials`` new ones."""
    import time

    from ray import tune

    from orchestrator.concurrency import elastic_limiter
    from orchestrator.progress import ProgressView
    from orchestrator.resume import release_driver
    from orchestrator.schedulers import build_trial_scheduler, seed_scheduler
    from orchestrator.searcher import FailureRelay, OptunaStudySearcher
    from orchestrator.tracking import start_recording
    from orchestrator.trainable import make_trainable

    tickets = plan.tickets if plan is not None else []
    searcher = OptunaStudySearcher(study, spec, max_new_trials=new_trials, resumed=tickets)
    scheduler = build_trial_scheduler(spec)
    if plan is not None:
        seed_scheduler(scheduler, plan.curves)
    recorder = start_recording(study, spec)  # MLflow: parent run now, a child run per trial
    if plan is not None and hasattr(recorder, "backfill_objective"):
        recorder.backfill_objective(study, spec.objective.metric)
    # The recorder's callback comes after FailureRelay: a failed trial is told before it is recorded.
    callbacks: list[tune.Callback] = [FailureRelay(searcher), recorder.callback]
    if not quiet:
        callbacks.append(ProgressView(searcher.progress, spec.objective.metric, stream or sys.stderr))
    tuner = tune.Tuner(
        make_trainable(spec),
        tune_config=tune.TuneConfig(
            search_alg=elastic_limiter(searcher, spec),  # concurrency follows the cluster's nodes
            scheduler=scheduler,
            num_samples=new_trials + len(tickets),
            max_concurrent_trials=None,  # the elastic limiter caps at spec.concurrency
            reuse_actors=True,
            time_budget_s=spec.budget.time_limit_s,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=_results_path(spec.results_dir),
            stop={"epoch": spec.budget.max_epochs},
            callbacks=callbacks,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    started = time.monotonic()
    left_running = 0
    try:
        tuner.fit()
    finally:
        limit = spec.budget.time_limit_s
        timed_out = limit is not None and time.monotonic() - started >= limit * 0.95
        left_running = searcher.end_live_trials(interrupted=not timed_out)
        recorder.finish(study, spec)
        release_driver(study)
    if left_running and not quiet:
        print(f"stopped with {left_running} trials unfinished; continue the study with: "
              f"stepsize resume {spec.name} --storage {spec.storage}", file=stream or sys.stderr)
    return summarize(study, spec)


def _study_folder(spec: StudySpec) -> str:
    """Ray Tune's folder for the study: its trials' checkpoints live under it."""
    return os.path.join(_results_path(spec.results_dir), spec.name)


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
