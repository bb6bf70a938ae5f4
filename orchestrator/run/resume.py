"""Plan the continuation of an interrupted or finished study from its Optuna storage.

The storage is the source of truth: finished trials (COMPLETE, PRUNED, FAIL) are kept as they are
and the sampler goes on from them; trials left RUNNING by a driver that died are run again under
their own trial numbers, from their newest checkpoint in the study's results folder when one is
there (from scratch when the folder is gone), so none is lost and none is counted twice. Every
recorded intermediate value also goes back into the early-stopping scheduler (see
:func:`orchestrator.run.schedulers.seed_scheduler`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator.errors import SpecError
from orchestrator.keys import Config, TrialAttr
from orchestrator.run.epoch_budget import budget_stop_reason
from orchestrator.run.searcher import ResumeTicket
from orchestrator.spec import StudySpec
from orchestrator.study.storage import running_trial
from orchestrator.study.storage import trial_id as storage_trial_id
from orchestrator.study.summary import charged_epochs, spent_epochs
from orchestrator.trial.checkpoints import find_checkpoints, latest_checkpoint

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class ResumePlan:
    """What a resumed run does: trials to run again, new trials to ask for, the curves so far."""

    tickets: list[ResumeTicket]
    new_trials: int
    finished: int
    completed_now: int = 0  # running trials that had already reached the epoch budget
    with_checkpoint: int = 0
    curves: dict[int, dict[int, float]] = field(default_factory=dict)
    epochs_spent: int = 0  # epochs the study's trials trained so far (retried ones included)
    epoch_budget: int | None = None  # budget.epochs
    ended_at_budget: int = 0  # running trials told PRUNED because the epoch budget is spent

    @property
    def budget_spent(self) -> bool:
        return self.epoch_budget is not None and self.epochs_spent >= self.epoch_budget

    def describe(self, name: str) -> str:
        parts = [f"resuming study {name!r}: {self.finished} trials finished"]
        if self.epoch_budget is not None:
            parts.append(f"{self.epochs_spent} of {self.epoch_budget} epochs trained")
        if self.tickets:
            parts.append(
                f"{len(self.tickets)} interrupted trials run again "
                f"({self.with_checkpoint} from their last checkpoint, {len(self.tickets) - self.with_checkpoint} from the start)"
            )
        if self.completed_now:
            parts.append(f"{self.completed_now} interrupted at their last epoch told COMPLETE")
        if self.ended_at_budget:
            parts.append(f"{self.ended_at_budget} interrupted told PRUNED (the epoch budget is spent)")
        parts.append(f"{self.new_trials} new trials")
        return ", ".join(parts)

    def at_budget(self, name: str, spec: StudySpec) -> str:
        """What a resume that runs nothing says: which budget the study reached, how to raise it."""
        if not self.budget_spent:
            return (f"study {name!r} has reached its budget of {spec.budget.trials} trials; "
                    f"pass --trials N (above {self.finished}) to extend it")
        reached = f"its budget of {spec.budget.epochs} epochs ({self.epochs_spent} trained)"
        extend = f"pass --epoch-budget N (above {self.epochs_spent})"
        if not spec.budget.trials_from_epochs and self.finished >= spec.budget.trials:
            reached += f" and of {spec.budget.trials} trials"
            extend += f" and --trials N (above {self.finished})"
        return f"study {name!r} has reached {reached}; {extend} to extend it"


def refuse_spent_epoch_budget(study: optuna.Study, name: str, epochs: int) -> None:
    """``--epoch-budget`` on resume must be above the epochs study ``name`` already trained."""
    spent = spent_epochs(study.get_trials(deepcopy=False))
    if epochs <= spent:
        raise SpecError("--epoch-budget", epochs, f"a total above the {spent} epochs study {name!r} already trained "
                                                  "(it extends the study's epoch budget to that many epochs)")


def plan_resume(study: optuna.Study, spec: StudySpec, study_folder: str | os.PathLike[str]) -> ResumePlan:
    """Work out how to continue ``study`` up to ``spec.budget.trials`` trials and
    ``spec.budget.epochs`` epochs in all, whichever comes first.

    Running trials that had already reported their last epoch are told COMPLETE here (their run
    ended; only the driver's telling was lost). When the epoch budget is spent, the other running
    trials are told PRUNED with what they reported, and no trial runs.
    """
    trials = study.get_trials(deepcopy=False)
    checkpoints = find_checkpoints(study_folder)
    plan = ResumePlan(tickets=[], new_trials=0, finished=0, epochs_spent=spent_epochs(trials),
                      epoch_budget=spec.budget.epochs)
    for trial in trials:
        if trial.intermediate_values:
            plan.curves[trial.number] = dict(trial.intermediate_values)
    for trial in trials:
        if trial.state in _FINISHED:
            plan.finished += 1
        elif trial.state == TrialState.RUNNING:
            if _reached_budget(trial, spec):
                _tell_complete(study, spec, trial)
                plan.finished += 1
                plan.completed_now += 1
                continue
            if plan.budget_spent:
                _tell_pruned_at_budget(study, spec, trial)
                plan.finished += 1
                plan.ended_at_budget += 1
                continue
            ticket = _ticket(study, trial, spec, checkpoints.get(trial.number, []))
            plan.with_checkpoint += Config.RESUME_FROM in ticket.config
            plan.tickets.append(ticket)
    if not plan.budget_spent:
        plan.new_trials = max(0, spec.budget.trials - plan.finished - len(plan.tickets))
    return plan


def _reached_budget(trial: FrozenTrial, spec: StudySpec) -> bool:
    return bool(trial.intermediate_values) and max(trial.intermediate_values) >= spec.budget.max_epochs


def _tell_complete(study: optuna.Study, spec: StudySpec, trial: FrozenTrial) -> None:
    last = max(trial.intermediate_values)
    live = running_trial(study, spec.storage, trial.number)
    live.set_user_attr(TrialAttr.EPOCHS, last)
    live.set_user_attr(TrialAttr.STOP_REASON, "completed")
    live.set_user_attr(TrialAttr.CHARGED_EPOCHS, charged_epochs(trial))
    study.tell(live, trial.intermediate_values[last], state=TrialState.COMPLETE)


def _tell_pruned_at_budget(study: optuna.Study, spec: StudySpec, trial: FrozenTrial) -> None:
    last = max(trial.intermediate_values) if trial.intermediate_values else 0
    live = running_trial(study, spec.storage, trial.number)
    live.set_user_attr(TrialAttr.EPOCHS, last)
    live.set_user_attr(TrialAttr.STOP_REASON, budget_stop_reason(last))
    live.set_user_attr(TrialAttr.CHARGED_EPOCHS, charged_epochs(trial))
    study.tell(live, state=TrialState.PRUNED)


def _ticket(study: optuna.Study, trial: FrozenTrial, spec: StudySpec, entries: list[tuple[int, str]]) -> ResumeTicket:
    last_epoch = max(trial.intermediate_values) if trial.intermediate_values else 0
    # The newest checkpoint at or before the last epoch Optuna was told: epochs after it are
    # trained again, so no epoch goes unrecorded.
    found = latest_checkpoint(entries, at_most_epoch=last_epoch)
    # Suggesting on the live trial returns the values it already has and samples only those the
    # killed driver had not drawn yet (it may have died between ask and the last suggest).
    trial_id = storage_trial_id(study, spec.storage, trial.number)
    config = spec.search_space.suggest(optuna.trial.Trial(study, trial_id))
    config = {**config, Config.TRIAL_NUMBER: trial.number}
    if found is not None:
        config[Config.RESUME_FROM] = found[1]
    return ResumeTicket(number=trial.number, trial_id=trial_id, config=config, last_epoch=last_epoch,
                        checkpoint_epoch=found[0] if found else None, charged_epochs=charged_epochs(trial))
