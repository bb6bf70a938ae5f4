"""Run a study: Optuna proposes, Ray Tune runs the trials, the scheduler stops poor ones early.

:func:`launch` creates a study and runs it to its budget; :func:`resume` continues one from its
storage; both run the trials with :func:`run_study`, which a benchmark or a tool can also call on a
study it created, with extra Tune callbacks or a stopper. Only this driver talks to the Optuna
storage and to MLflow; trials report to Ray Tune and nothing else.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from orchestrator.credentials import check_variables, for_storing, has_password
from orchestrator.errors import SpecError
from orchestrator.keys import Result
from orchestrator.run.ray_session import apply_tune_settings, ensure_ray
from orchestrator.spec import StudySpec, with_overrides
from orchestrator.study.driver_lock import claim_driver, release_driver
from orchestrator.study.storage import (
    create_study,
    load_study,
    next_free_name,
    refuse_existing_study,
    store_spec,
)
from orchestrator.study.summary import StudySummary, summarize
from orchestrator.trial.ddp import require_train_v1
from orchestrator.workloads.registry import resolve_workload

if TYPE_CHECKING:
    import optuna

    from orchestrator.run.resume import ResumePlan
    from orchestrator.run.searcher import OptunaStudySearcher, SearchProgress
    from orchestrator.tracking.naming import TrialStatus


@dataclass(frozen=True)
class Console:
    """What a run shows: ``quiet`` drops the live progress view and the notes, ``verbose`` keeps
    Ray's own logs, ``stream`` is where the view and the notes go (standard error by default)."""

    quiet: bool = False
    verbose: bool = False
    stream: TextIO | None = None

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out)

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stderr


@dataclass(frozen=True)
class RunOutcome:
    """How a run of a study ended: where the study stands, the run's own counts (with the driver's
    time for each suggest, ``progress.suggest_seconds``) and how many trials it left unfinished
    (interrupted; ``stepsize resume`` runs them again)."""

    summary: StudySummary
    progress: "SearchProgress | None" = None
    left_running: int = 0


def launch(spec: StudySpec, console: Console = Console(), new: bool = False) -> RunOutcome:
    """Create ``spec``'s study and run it to its budget; return the summary.

    Everything is validated (spec, workload import, free study name) before any store is
    written. ``new`` names the study after the first free suffix (``NAME-2``...) when ``NAME``
    is taken.
    """
    apply_tune_settings(console.verbose)  # before anything imports Ray Tune (it reads some settings at import)
    resolve_workload(spec.workload)  # a missing module fails here, before anything is created
    require_train_v1(spec)
    _refuse_unset_references(spec)
    if new:
        spec = with_overrides(spec, name=next_free_name(spec))
    refuse_existing_study(spec)

    from orchestrator.lr_range.bounds import (
        auto_lr_bounds,
        lr_range_summary,
        save_lr_range,
    )
    from orchestrator.study.samplers import grid_size

    ensure_ray(spec.address, console.verbose)
    lr_record = None
    if spec.lr_bounds == "auto":
        spec, lr_record = auto_lr_bounds(spec)
        console.note(lr_range_summary(lr_record))
    study = create_study(spec)
    claim_driver(study)
    if lr_record is not None:
        save_lr_range(study, spec, lr_record, results_path(spec.results_dir))
    trials = spec.budget.trials
    if spec.sampler.name == "grid":
        trials = min(trials, grid_size(spec))  # each grid point once, even with trials running
    return run_study(study, spec, trials, console)


def resume(name: str, storage: str, trials: int | None = None, address: str | None = None,
           console: Console = Console()) -> RunOutcome:
    """Continue study ``name`` from its storage: trials that were running run again (from their
    last checkpoint when Ray's results folder still has it), then new trials up to the budget;
    ``trials`` raises the budget to extend a finished study."""
    apply_tune_settings(console.verbose)  # before anything imports Ray Tune (it reads some settings at import)
    from orchestrator.run.resume import plan_resume

    study, spec = load_study(name, storage)
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    if trials is not None and trials <= finished:
        raise SpecError("--trials", trials, f"a total above the {finished} trials study {name!r} already finished (it extends the study to that many trials)")
    spec = with_overrides(spec, trials=trials, address=address, storage=storage)
    _refuse_unset_references(spec)
    resolve_workload(spec.workload)
    require_train_v1(spec)
    claim_driver(study)
    plan = plan_resume(study, spec, os.path.join(results_path(spec.results_dir), spec.name))
    store_spec(study, spec)
    console.note(plan.describe(name))
    if not plan.tickets and plan.new_trials == 0:
        release_driver(study)
        console.note(f"study {name!r} has reached its budget of {spec.budget.trials} trials; "
                     f"pass --trials N (above {plan.finished}) to extend it")
        return RunOutcome(summarize(study, spec))
    ensure_ray(spec.address, console.verbose)
    return run_study(study, spec, plan.new_trials, console, plan=plan)


def _refuse_unset_references(spec: StudySpec) -> None:
    """Before anything is written: every ``${NAME}`` in the study's URLs must be set."""
    check_variables(spec.storage, "storage")
    check_variables(spec.tracking_uri, "tracking_uri")


def run_study(study: "optuna.Study", spec: StudySpec, new_trials: int, console: Console = Console(),
              plan: "ResumePlan | None" = None, *, callbacks: Sequence[Any] = (),
              stopper: Any = None) -> RunOutcome:
    """Run ``study`` (created or loaded, and claimed, by the caller; Ray joined) through Ray Tune:
    the trials ``plan`` resumes first, then ``new_trials`` new ones. ``callbacks`` are more Ray
    Tune callbacks (after stepsize's own); ``stopper`` a Ray Tune stopper that may end trials or the
    run sooner than the epoch budget, which always applies. Releases the study at the end."""
    from ray import tune
    from ray.tune.stopper import CombinedStopper, FunctionStopper

    from orchestrator.run.concurrency import elastic_limiter
    from orchestrator.run.progress import ProgressView
    from orchestrator.run.schedulers import build_trial_scheduler, seed_scheduler
    from orchestrator.run.searcher import FailureRelay, OptunaStudySearcher
    from orchestrator.tracking import start_recording
    from orchestrator.trial.trainable import make_trainable

    tickets = plan.tickets if plan is not None else []
    searcher = OptunaStudySearcher(study, spec, max_new_trials=new_trials, resumed=tickets)
    scheduler = build_trial_scheduler(spec)
    if plan is not None:
        seed_scheduler(scheduler, plan.curves)
    # MLflow: the parent run now, a child run per trial, each ended with the state the searcher told.
    recorder = start_recording(study, spec, status_of=lambda number: told_status(searcher, number))
    if plan is not None:
        recorder.backfill_objective(study, spec.objective.metric)
    # The recorder's callback comes after FailureRelay: a failed trial is told before it is recorded.
    own: list[tune.Callback] = [FailureRelay(searcher), recorder.callback]
    if not console.quiet:
        own.append(ProgressView(searcher.progress, spec.objective.metric, console.out))
    max_epochs = spec.budget.max_epochs
    stop: Any = {Result.EPOCH: max_epochs}
    if stopper is not None:
        stop = CombinedStopper(FunctionStopper(lambda trial_id, result: result.get(Result.EPOCH, 0) >= max_epochs),
                               stopper)
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
            storage_path=results_path(spec.results_dir),
            stop=stop,
            callbacks=[*own, *callbacks],
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
    if left_running:
        storage = shlex.quote(for_storing(spec.storage))  # works with ~/.pgpass or PGPASSWORD
        login = " (with the password in ~/.pgpass or PGPASSWORD)" if has_password(spec.storage) else ""
        console.note(f"stopped with {left_running} trials unfinished; continue the study with: "
                     f"stepsize resume {spec.name} --storage {storage}{login}")
    return RunOutcome(summarize(study, spec), searcher.progress, left_running)


def told_status(searcher: "OptunaStudySearcher", number: int) -> "TrialStatus | None":
    """How the searcher told trial ``number``'s end, as the MLflow record shows it (None: not yet)."""
    from orchestrator.tracking.naming import TrialStatus

    told = searcher.told.get(number)
    return None if told is None else TrialStatus(*told)


def results_path(results_dir: str) -> str:
    """Ray Tune's storage path for ``results_dir``: a local folder (made absolute and created) or
    a URI (``s3://...``) as given."""
    if "://" in results_dir:
        return results_dir
    path = Path(os.path.expanduser(results_dir)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
