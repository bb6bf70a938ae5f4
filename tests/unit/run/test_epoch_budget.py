"""``budget.epochs`` without Ray: every result is charged to its trial (retried epochs included),
the study asks no trial and stops the running ones at their next result once the budget is spent,
and a resume counts what was spent. The study's own searcher, stopper and scheduler, in process;
the same on real Ray through the CLI: tests/integration/run/test_epoch_budget.py."""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from orchestrator.cli import _summary_text
from orchestrator.keys import Result, TrialAttr
from orchestrator.run.progress import progress_line
from orchestrator.run.resume import plan_resume
from orchestrator.run.searcher import OptunaStudySearcher
from orchestrator.run.simulate import simulate
from orchestrator.run.stopping import StudyStopper
from orchestrator.spec import spec_from_mapping
from orchestrator.study.storage import create_study
from orchestrator.study.summary import spent_epochs, summarize


def _spec(budget, **fields):
    data = {"name": "eb", "workload": "digits_mlp", "search_space": "lr_only", "budget": budget, "seed": 3,
            "concurrency": 3, "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3}}
    data.update(fields)
    return spec_from_mapping(data)


def _curve(params):
    gap = (math.log10(params["learning_rate"]) + 1.5) ** 2
    return lambda epoch: {"val_loss": gap + 1.0 / epoch}


def _result(epoch, **extra):
    return {Result.EPOCH: epoch, "training_iteration": epoch, "val_loss": 1.0 + 1.0 / epoch, **extra}


def test_a_search_ends_at_its_epoch_budget_with_every_trial_told():
    sim = simulate(_spec({"epochs": 40, "max_epochs": 6}), _curve)
    trials = sim.study.trials
    charged = [t.user_attrs[TrialAttr.CHARGED_EPOCHS] for t in trials]
    assert 40 <= sum(charged) == sim.epochs <= 40 + 3 - 1  # the epochs in flight when it was reached
    assert sim.searcher.progress.epochs.spent == sum(charged)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for trial in trials:  # nothing retried here: what was charged is what Optuna was told
        assert trial.user_attrs[TrialAttr.CHARGED_EPOCHS] == len(trial.intermediate_values) == trial.user_attrs[TrialAttr.EPOCHS]
    stopped = [t for t in trials if "epoch budget" in t.user_attrs[TrialAttr.STOP_REASON]]
    assert stopped, "the trials running when the budget was reached are stopped at their next result"
    for trial in stopped:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs[TrialAttr.STOP_REASON] == (
            f"stopped at epoch {len(trial.intermediate_values)} when the epoch budget was reached")
    assert len(trials) < 40  # no trial was asked once the budget was spent
    line = progress_line(sim.searcher.progress, "val_loss", now=sim.searcher.progress.started_at)
    assert f"trials {len(trials)} done" in line and f"epochs {sum(charged)}/40" in line


def test_a_trial_count_given_beside_the_epochs_ends_the_study_first_when_reached_first():
    sim = simulate(_spec({"epochs": 1000, "trials": 5, "max_epochs": 6}), _curve)
    assert len(sim.study.trials) == 5 and sim.searcher.progress.epochs.spent < 1000
    assert not any("epoch budget" in t.user_attrs[TrialAttr.STOP_REASON] for t in sim.study.trials)
    assert "trials 5/5 done" in progress_line(sim.searcher.progress, "val_loss")


def test_retried_epochs_are_charged_and_the_budget_stops_trials_at_their_next_result():
    spec = _spec({"epochs": 8, "max_epochs": 5}, scheduler="none")
    study = optuna.create_study(direction="minimize")
    searcher = OptunaStudySearcher(study, spec, max_new_trials=10)
    stopper = StudyStopper(searcher, spec.budget.max_epochs)

    def step(trial_id, epoch, **extra):
        result = _result(epoch, **extra)
        if stopper(trial_id, result):  # as Ray Tune: a result that stops its trial goes to on_trial_complete
            searcher.on_trial_complete(trial_id, {**result, Result.DONE: True})
            return True
        searcher.on_trial_result(trial_id, result)
        return False

    assert isinstance(searcher.suggest("a"), dict) and isinstance(searcher.suggest("b"), dict)
    assert not any(step("a", epoch) for epoch in (1, 2, 3))
    searcher.note_retry("a")  # its worker died; Ray Tune runs it again from its epoch-1 checkpoint
    assert not any(step("a", epoch) for epoch in (2, 3))  # trained again: charged, not told again
    assert searcher.progress.epochs.spent == 5
    assert not stopper("a", {**_result(3), Result.DONE: True})  # Tune's repeat of the last result: no epoch
    assert not step("b", 1) and not step("b", 2)
    assert searcher.progress.epochs.spent == 7
    assert step("a", 4)  # the 8th epoch: the budget is spent, "a" stops at this result
    assert searcher.suggest("c") == Searcher.FINISHED  # no new trial once it is spent
    assert step("b", 3)  # "b" stops at its next result
    a, b = study.trials
    assert a.state == b.state == TrialState.PRUNED
    assert a.user_attrs[TrialAttr.STOP_REASON] == "stopped at epoch 4 when the epoch budget was reached"
    assert b.user_attrs[TrialAttr.STOP_REASON] == "stopped at epoch 3 when the epoch budget was reached"
    assert (a.user_attrs[TrialAttr.CHARGED_EPOCHS], len(a.intermediate_values)) == (6, 4)
    assert (b.user_attrs[TrialAttr.CHARGED_EPOCHS], len(b.intermediate_values)) == (3, 3)
    assert spent_epochs(study.trials) == searcher.progress.epochs.spent == 9
    assert searcher.end_live_trials() == 0


def test_a_trial_that_ends_its_last_epoch_at_the_budget_is_complete():
    spec = _spec({"epochs": 3, "max_epochs": 3}, scheduler="none")
    study = optuna.create_study(direction="minimize")
    searcher = OptunaStudySearcher(study, spec, max_new_trials=10)
    stopper = StudyStopper(searcher, spec.budget.max_epochs)
    searcher.suggest("a")
    for epoch in (1, 2):
        assert not stopper("a", _result(epoch))
        searcher.on_trial_result("a", _result(epoch))
    assert stopper("a", _result(3))
    searcher.on_trial_complete("a", {**_result(3), Result.DONE: True})
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs[TrialAttr.CHARGED_EPOCHS] == 3


def _interrupted_study(tmp_path, budget):
    """A study as a killed driver leaves it: trial 0 told (7 epochs charged, 5 told: two retried),
    trials 1 and 2 RUNNING with 2 and 0 epochs told."""
    spec = _spec(budget, storage=f"sqlite:///{tmp_path}/optuna.db", results_dir=str(tmp_path / "ray"))
    study = create_study(spec)
    done = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)})
    for epoch in range(1, 6):
        done.report(1.0 / epoch, epoch)
    done.set_user_attr(TrialAttr.CHARGED_EPOCHS, 7)
    study.tell(done, 0.2)
    running = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)})
    running.report(0.9, 1)
    running.report(0.8, 2)
    study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)})
    return spec, study


def test_a_resume_counts_the_epochs_spent_and_runs_only_within_the_budget(tmp_path):
    spec, study = _interrupted_study(tmp_path, {"epochs": 30, "max_epochs": 6})
    plan = plan_resume(study, spec, tmp_path / "ray" / spec.name)
    assert plan.epochs_spent == 9 and not plan.budget_spent and plan.finished == 1
    assert [(t.number, t.charged_epochs) for t in plan.tickets] == [(1, 2), (2, 0)]
    assert plan.new_trials == 30 - 1 - 2  # the trial count the epochs bound; the epochs end it sooner
    assert "9 of 30 epochs trained" in plan.describe(spec.name)
    searcher = OptunaStudySearcher(study, spec, max_new_trials=plan.new_trials, resumed=plan.tickets)
    assert searcher.progress.epochs.spent == 9


def test_a_resume_of_a_study_whose_budget_is_spent_ends_its_running_trials(tmp_path):
    spec, study = _interrupted_study(tmp_path, {"epochs": 9, "max_epochs": 6})
    plan = plan_resume(study, spec, tmp_path / "ray" / spec.name)
    assert plan.budget_spent and not plan.tickets and plan.new_trials == 0
    assert (plan.finished, plan.ended_at_budget) == (3, 2)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    assert [t.user_attrs[TrialAttr.STOP_REASON] for t in trials[1:]] == [
        "stopped at epoch 2 when the epoch budget was reached",
        "stopped before its first epoch when the epoch budget was reached"]
    assert [t.user_attrs[TrialAttr.CHARGED_EPOCHS] for t in trials] == [7, 2, 0]
    summary = summarize(study, spec)
    assert (summary.epochs_spent, summary.epoch_budget) == (9, 9)
    assert summary.to_dict()["epochs"] == {"spent": 9, "budget": 9}
    assert "; epochs 9/9" in _summary_text(summary)
