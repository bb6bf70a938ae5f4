"""Plan the continuation of an interrupted or finished study from its Optuna storage.

The storage is the source of truth: finished trials (COMPLETE, PRUNED, FAIL) are kept as they are
and the sampler goes on from them; trials left RUNNING by a driver that died are run again under
their own trial numbers, from their newest checkpoint in the study's results folder when one is
there (from scratch when the folder is gone), so none is lost and none is counted twice. Every
recorded intermediate value also goes back into the early-stopping scheduler (see
:func:`orchestrator.schedulers.seed_scheduler`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator.checkpoints import find_checkpoints, latest_checkpoint
from orchestrator.searcher import ResumeTicket
from orchestrator.spec import StudySpec
from orchestrator.trainable import RESUME_KEY, TRIAL_NUMBER_KEY

DRIVER_ATTR = "stepsize.driver"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class StudyBusyError(RuntimeError):
    """Another live process on this machine is running the study's driver."""

    def __init__(self, name: str, pid: int):
        super().__init__(
            f"study {name!r} is being run right now by process {pid} on this machine; stop that "
            "process first (Ctrl-C, or kill it), then resume. Two drivers on one study would run "
            "its trials twice."
        )


@dataclass
class ResumePlan:
    """What a resumed run does: trials to run again, new trials to ask for, the curves so far."""

    tickets: list[ResumeTicket]
    new_trials: int
    finished: int
    completed_now: int = 0  # running trials that had already reached the epoch budget
    with_checkpoint: int = 0
    curves: dict[int, dict[int, float]] = field(default_factory=dict)

    def describe(self, name: str) -> str:
        parts = [f"resuming study {name!r}: {self.finished} trials finished"]
        if self.tickets:
            parts.append(
                f"{len(self.tickets)} interrupted trials run again "
                f"({self.with_checkpoint} from their last checkpoint, {len(self.tickets) - self.with_checkpoint} from the start)"
            )
        if self.completed_now:
            parts.append(f"{self.completed_now} interrupted at their last epoch told COMPLETE")
        parts.append(f"{self.new_trials} new trials")
        return ", ".join(parts)


def plan_resume(study: optuna.Study, spec: StudySpec, study_folder: str | os.PathLike[str]) -> ResumePlan:
    """Work out how to continue ``study`` up to ``spec.budget.trials`` trials in all.

    Running trials that had already reported their last epoch are told COMPLETE here (their run
    ended; only the driver's telling was lost).
    """
    trials = study.get_trials(deepcopy=False)
    checkpoints = find_checkpoints(study_folder)
    plan = ResumePlan(tickets=[], new_trials=0, finished=0)
    for trial in trials:
        if trial.intermediate_values:
            plan.curves[trial.number] = dict(trial.intermediate_values)
    for trial in trials:
        if trial.state in _FINISHED:
            plan.finished += 1
        elif trial.state == TrialState.RUNNING:
            if _reached_budget(trial, spec):
                _tell_complete(study, trial)
                plan.finished += 1
                plan.completed_now += 1
                continue
            ticket = _ticket(study, trial, spec, checkpoints.get(trial.number, []))
            plan.with_checkpoint += RESUME_KEY in ticket.config
            plan.tickets.append(ticket)
    plan.new_trials = max(0, spec.budget.trials - plan.finished - len(plan.tickets))
    return plan


def _reached_budget(trial: FrozenTrial, spec: StudySpec) -> bool:
    return bool(trial.intermediate_values) and max(trial.intermediate_values) >= spec.budget.max_epochs


def _tell_complete(study: optuna.Study, trial: FrozenTrial) -> None:
    last = max(trial.intermediate_values)
    live = optuna.trial.Trial(study, trial._trial_id)
    live.set_user_attr("epochs", last)
    live.set_user_attr("stop_reason", "completed")
    study.tell(live, trial.intermediate_values[last], state=TrialState.COMPLETE)


def _ticket(study: optuna.Study, trial: FrozenTrial, spec: StudySpec, entries: list[tuple[int, str]]) -> ResumeTicket:
    last_epoch = max(trial.intermediate_values) if trial.intermediate_values else 0
    # The newest checkpoint at or before the last epoch Optuna was told: epochs after it are
    # trained again, so no epoch goes unrecorded.
    found = latest_checkpoint(entries, at_most_epoch=last_epoch)
    # Suggesting on the live trial returns the values it already has and samples only those the
    # killed driver had not drawn yet (it may have died between ask and the last suggest).
    config = spec.search_space.suggest(optuna.trial.Trial(study, trial._trial_id))
    config = {**config, TRIAL_NUMBER_KEY: trial.number}
    if found is not None:
        config[RESUME_KEY] = found[1]
    return ResumeTicket(number=trial.number, storage_id=trial._trial_id, config=config, last_epoch=last_epoch,
                        checkpoint_epoch=found[0] if found else None)


def claim_driver(study: optuna.Study) -> None:
    """Record this process as the study's driver; :class:`StudyBusyError` when a live process
    on this machine already is."""
    holder = study.user_attrs.get(DRIVER_ATTR) or {}
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        raise StudyBusyError(study.study_name, pid)
    study.set_user_attr(DRIVER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})


def release_driver(study: optuna.Study) -> None:
    """Let another process drive the study (this run of it has ended)."""
    holder = study.user_attrs.get(DRIVER_ATTR) or {}
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        study.set_user_attr(DRIVER_ATTR, {})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")
    if status.is_file() and "\nState:\tZ" in status.read_text():
        return False  # a zombie: dead, not yet reaped
    return True
