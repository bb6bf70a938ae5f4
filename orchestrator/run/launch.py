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
from orchestrator.errors import SpecError, StorageGaveUp, StudyFailed, StudyInterrupted
from orchestrator.run.ray_session import apply_tune_settings, cluster_address, ensure_ray, preflight, trials_done
from orchestrator.spec import StudySpec, with_overrides
from orchestrator.spec.model import DEFAULT_STORAGE_PATIENCE_S
from orchestrator.study.driver_lock import claim_driver, release_driver
from orchestrator.study.storage import (
    be_patient,
    create_study,
    load_study,
    next_free_name,
    patient_storage,
    refuse_existing_study,
    store_spec,
)
from orchestrator.study.summary import STATE_WORDS, StudySummary, summarize
from orchestrator.trial.ddp import require_train_v1
from orchestrator.workloads.registry import resolve_workload

if TYPE_CHECKING:
    import optuna

    from orchestrator.run.progress import SearchProgress
    from orchestrator.run.resume import ResumePlan
    from orchestrator.run.searcher import OptunaStudySearcher
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
    be_patient(spec.storage, spec.storage_patience_s)  # the driver rides out a storage outage
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

    _start_ray(spec, console)
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
           console: Console = Console(), epochs: int | None = None) -> RunOutcome:
    """Continue study ``name`` from its storage: trials that were running run again (from their
    last checkpoint when Ray's results folder still has it), then new trials up to the budget;
    ``trials`` raises the trial budget, ``epochs`` the epoch budget (``budget.epochs``), to extend
    a finished study."""
    apply_tune_settings(console.verbose)  # before anything imports Ray Tune (it reads some settings at import)
    from orchestrator.run.resume import plan_resume, refuse_spent_epoch_budget

    be_patient(storage, DEFAULT_STORAGE_PATIENCE_S)
    study, spec = load_study(name, storage)
    be_patient(storage, spec.storage_patience_s)  # the study file's patience, once it is read
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    if trials is not None and trials <= finished:
        raise SpecError("--trials", trials, f"a total above the {finished} trials study {name!r} already finished (it extends the study to that many trials)")
    if epochs is not None:
        refuse_spent_epoch_budget(study, name, epochs)
    spec = with_overrides(spec, trials=trials, epochs=epochs, address=address, storage=storage)
    _refuse_unset_references(spec)
    resolve_workload(spec.workload)
    require_train_v1(spec)
    preflight(spec.address)  # a bad --address is refused before it is stored with the study
    claim_driver(study)
    plan = plan_resume(study, spec, os.path.join(results_path(spec.results_dir), spec.name))
    store_spec(study, spec)
    console.note(plan.describe(name))
    if not plan.tickets and plan.new_trials == 0:
        try:
            _complete_record(study, spec, console, ended_now=bool(plan.completed_now or plan.ended_at_budget))
        finally:
            release_driver(study)
        console.note(plan.at_budget(name, spec))
        return RunOutcome(summarize(study, spec))
    _start_ray(spec, console)
    return run_study(study, spec, plan.new_trials, console, plan=plan)


def _complete_record(study: "optuna.Study", spec: StudySpec, console: Console, ended_now: bool = False) -> None:
    """A study at its budget whose driver died before its MLflow record was complete (killed
    while the tracking server was down, say), or whose interrupted trials were told their end
    just now (``ended_now``): write what the record log kept, every trial's run with its state and
    curve, and the parent's end with the plots and the best model."""
    from orchestrator.keys import Env
    from orchestrator.tracking.setup import recorder_for

    if os.environ.get(Env.TRACKING, "").lower() in ("off", "0", "false", "no"):
        return
    try:
        recorder = recorder_for(study, spec)
        if recorder.log.waiting() == 0 and not ended_now:
            return  # nothing was left unwritten: the record is complete
    except Exception:  # noqa: BLE001 - the study itself is complete; `stepsize ui` can replay later
        return
    console.note(f"study {spec.name}: completing its MLflow record ({recorder.log.waiting()} records kept)")
    recorder.begin(study, spec)
    recorder.backfill_objective(study, spec.objective.metric)
    recorder.finish(study, spec, status="FINISHED")


def _start_ray(spec: StudySpec, console: Console) -> None:
    """Join or start Ray, saying so first (it can take a while) and how long it took."""
    began = time.monotonic()
    joined = cluster_address(spec.address)
    where = f"joining the Ray cluster at {joined}" if joined else "starting Ray on this machine"
    console.note(f"study {spec.name}: {where}...")
    ensure_ray(spec.address, console.verbose)
    console.note(f"study {spec.name}: Ray ready in {time.monotonic() - began:.1f} s")
    _check_trial_fits(spec, console)


def _check_trial_fits(spec: StudySpec, console: Console) -> None:
    """A trial no node can hold would wait for ever: refused on a Ray started for the study;
    on a cluster (where such a node may join) said plainly before the trials wait."""
    from orchestrator.run.concurrency import nodes_resources, unfit_resources

    why = unfit_resources(spec, nodes_resources())
    if why is None:
        return
    joined = cluster_address(spec.address)
    if joined is None:
        raise SpecError("resources", {"cpus": spec.resources.cpus, "gpu": spec.resources.gpu,
                                      "workers": spec.resources.workers},
                        "what one node of the Ray cluster can hold",
                        f"{why} (Ray on this machine), so no trial could ever start. Lower it, or run "
                        "on a cluster that has such nodes (--address).")
    console.note(f"warning: {why}; trials wait until a node that holds one joins the cluster at {joined}")


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

    from orchestrator.run.concurrency import elastic_limiter
    from orchestrator.run.progress import ProgressView, TrialErrorLog
    from orchestrator.run.schedulers import build_trial_scheduler, seed_scheduler
    from orchestrator.run.searcher import FailureRelay, OptunaStudySearcher
    from orchestrator.run.stopping import StudyStopper, deferred_interrupts, interruptible
    from orchestrator.study.owned import own_study
    from orchestrator.tracking import start_recording
    from orchestrator.trial.trainable import make_trainable

    study = own_study(study)  # the driver's own writes are kept in memory, not read back per suggest
    tickets = plan.tickets if plan is not None else []
    searcher = OptunaStudySearcher(study, spec, max_new_trials=new_trials, resumed=tickets)
    scheduler = build_trial_scheduler(spec)
    if plan is not None:
        seed_scheduler(scheduler, plan.curves)
    console.note(f"study {spec.name}: recording to MLflow")
    # MLflow: the parent run now, a child run per trial, each ended with the state the searcher told.
    recorder = start_recording(study, spec, status_of=lambda number: told_status(searcher, number))
    view = None if console.quiet else ProgressView(searcher.progress, spec.objective.metric, console.out)
    show = view.show if view is not None else (lambda text: print(text, file=console.out, flush=True))
    errors = TrialErrorLog(spec.name, show)
    searcher.on_failure = errors  # the first trial with each distinct error is shown as it happens
    started = time.monotonic()
    try:
        if plan is not None:
            recorder.backfill_objective(study, spec.objective.metric)
        # The recorder's callback comes after FailureRelay: a failed trial is told before it is recorded.
        own: list[tune.Callback] = [FailureRelay(searcher), recorder.callback]
        if view is not None:
            own.append(view)
        tuner = tune.Tuner(
            make_trainable(spec),
            tune_config=tune.TuneConfig(
                search_alg=elastic_limiter(searcher, spec),  # concurrency follows the cluster's nodes
                scheduler=scheduler,
                num_samples=new_trials + len(tickets),
                max_concurrent_trials=None,  # the elastic limiter caps at spec.concurrency
                reuse_actors=spec.limits.reuse_workers,  # a worker over its own limit is ended with its trial
                time_budget_s=spec.budget.time_limit_s,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=results_path(spec.results_dir),
                stop=StudyStopper(searcher, spec.budget.max_epochs, stopper, note=show),
                callbacks=[*own, *callbacks],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
        console.note(f"study {spec.name}: starting {new_trials + len(tickets)} trials"
                     + (f" ({len(tickets)} resumed)" if tickets else ""))
        if view is not None:
            view.start()
        with interruptible(searcher):
            try:
                tuner.fit()
            except KeyboardInterrupt:  # a second Ctrl-C: end now, keeping what was told
                searcher.interrupted = True
        if not searcher.interrupted:
            # Every trial has ended: the command's Ray is left in the background while the record
            # is written. After Ctrl-C, Ray Tune may still be stopping trials: Ray's exit handler.
            trials_done()
    except KeyboardInterrupt:  # before the run started
        searcher.interrupted = True
    finally:
        # The study's end is written with Ctrl-C deferred (a second one quits at once).
        with deferred_interrupts():
            if view is not None:
                view.close()
            _give_up_if_storage_did(spec, searcher, recorder)
            limit = spec.budget.time_limit_s
            timed_out = limit is not None and time.monotonic() - started >= limit * 0.95
            left_running = searcher.end_live_trials(interrupted=searcher.interrupted or not timed_out and
                                                    searcher.contract_error is None)
            status = "KILLED" if searcher.interrupted else "FAILED" if searcher.contract_error else None
            try:
                recorder.finish(study, spec, status=status)
            finally:
                release_driver(study)
    outcome = RunOutcome(summarize(study, spec), searcher.progress, left_running)
    return _judge(outcome, spec, searcher, errors, console)


def _give_up_if_storage_did(spec: StudySpec, searcher: "OptunaStudySearcher", recorder: Any) -> None:
    """When the storage stayed away past ``storage_patience``: leave the study as it is (running
    trials stay RUNNING, nothing more is written to it), end the MLflow parent run KILLED, and raise
    :class:`StorageGaveUp` with the resume command."""
    storage = patient_storage(spec.storage)
    gave_up = storage.gave_up if storage is not None else None
    if gave_up is None:
        return
    abandon = getattr(recorder, "abandon", None)
    if abandon is not None:
        abandon("KILLED")
    raise StorageGaveUp(gave_up.url, gave_up.cause, gave_up.waited_s, resume=resume_command(spec))


def _judge(outcome: RunOutcome, spec: StudySpec, searcher: "OptunaStudySearcher", errors: Any,
           console: Console = Console()) -> RunOutcome:
    """The run's outcome, or the error that says why the study could not do its job: it was
    interrupted (resumable), the objective was never reported, or no trial completed."""
    summary = outcome.summary
    if searcher.contract_error is not None:
        raise searcher.contract_error
    if searcher.interrupted:
        raise StudyInterrupted(
            f"study {spec.name} interrupted: {summary.finished} trials finished, {outcome.left_running} left unfinished"
            f" (they stay resumable, from their last checkpoint). Continue it with: {resume_command(spec)}",
            summary)
    if outcome.left_running:  # a caller's stopper ended the run: the trials it cut stay resumable
        console.note(f"stopped with {outcome.left_running} trials unfinished; continue the study with: "
                     f"{resume_command(spec)}")
        return outcome
    if summary.best_number is None and summary.total:
        failed = summary.counts.get("FAIL", 0)
        if failed == summary.total:
            first = "; ".join(f"{line} ({count}x)" for line, count in list(errors.distinct.items())[:3])
            raise StudyFailed(
                f"study {spec.name}: every trial failed ({failed} of {failed}), so it has no best configuration. "
                f"Errors: {first or 'see below'}. Fix the workload (full text of each: stepsize status "
                f"{spec.name} --errors), then launch again with --new.", summary)
        epochs = spec.budget.epochs
        if epochs is not None and summary.epochs_spent >= epochs:  # the epoch budget ended it
            more = ("Give it a larger epoch budget (budget.epochs), or resume it with one: "
                    f"{resume_command(spec, epochs=summary.epochs_spent + epochs)}")
        else:
            more = ("Give trials more time (budget.time_limit) or more trials (budget.trials), or resume it with more "
                    f"trials: {resume_command(spec, trials=summary.total + spec.budget.trials)}")
        raise StudyFailed(
            f"study {spec.name}: no trial completed ({_states(summary)}), so it has no best configuration. {more}", summary)
    return outcome


def _states(summary: StudySummary) -> str:
    return ", ".join(f"{count} {STATE_WORDS.get(state, state.lower())}" for state, count in sorted(summary.counts.items()))


def resume_command(spec: StudySpec, trials: int | None = None, epochs: int | None = None) -> str:
    """The command that continues ``spec``'s study (its storage URL without a password: the
    password comes from ~/.pgpass or PGPASSWORD, as the note says)."""
    storage = shlex.quote(for_storing(spec.storage))
    more = f" --trials {trials}" if trials is not None else ""
    more += f" --epoch-budget {epochs}" if epochs is not None else ""
    login = " (with the password in ~/.pgpass or PGPASSWORD)" if has_password(spec.storage) else ""
    return f"stepsize resume {spec.name} --storage {storage}{more}{login}"


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
