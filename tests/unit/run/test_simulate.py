"""The in-process replay of a search: the study's own sampler, searcher and scheduler, trials
played by a function."""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState

from orchestrator.keys import Result, TrialAttr
from orchestrator.run.simulate import simulate
from orchestrator.spec import spec_from_mapping


def _spec(**fields):
    data = {"name": "sim", "workload": "digits_mlp", "search_space": "lr_only",
            "budget": {"trials": 24, "max_epochs": 9}, "seed": 5, "concurrency": 3}
    data.update(fields)
    return spec_from_mapping(data)


def _curve(params):
    gap = (math.log10(params["learning_rate"]) + 1.5) ** 2  # best near 10**-1.5
    return lambda epoch: {"val_loss": gap + 1.0 / epoch, "train_loss": 1.0}


def test_a_simulated_search_runs_the_budget_and_stops_poor_trials_early():
    sim = simulate(_spec(), _curve)
    states = [t.state for t in sim.study.trials]
    assert sim.trials == 24 and len(states) == 24
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for trial in sim.study.trials:
        epochs = trial.user_attrs[TrialAttr.EPOCHS]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        assert (trial.state == TrialState.COMPLETE) == (epochs == 9)
    assert sim.epochs == sum(t.user_attrs[TrialAttr.EPOCHS] for t in sim.study.trials) < 24 * 9
    assert abs(math.log10(sim.study.best_params["learning_rate"]) + 1.5) < 0.5


def test_the_same_spec_replays_the_same_search():
    first, second = simulate(_spec(), _curve), simulate(_spec(), _curve)
    assert [t.params for t in first.study.trials] == [t.params for t in second.study.trials]
    assert [t.state for t in first.study.trials] == [t.state for t in second.study.trials]


def test_the_epoch_hook_ends_the_search_and_another_sampler_can_be_compared():
    spent = []

    def budget(trial_id, epoch, metrics):
        spent.append(trial_id)
        return len(spent) >= 40

    sim = simulate(_spec(), _curve, on_epoch=budget, sampler=optuna.samplers.RandomSampler(seed=1))
    assert sim.epochs == 40 and isinstance(sim.study.sampler, optuna.samplers.RandomSampler)
    assert all(t.state.is_finished() for t in sim.study.trials)


def _diverging_curve(params):
    """Best near learning_rate 0.03; above 1 the loss explodes in the first epoch, reported as the
    trial runner reports a diverged trial (the objective is a penalty)."""
    lr = params["learning_rate"]

    def epoch_metrics(epoch):
        if lr > 1.0:
            return {Result.DIVERGED: 1.0, "val_loss": 10.0, Result.DIVERGENCE_PENALTY: 10.0}
        return {"val_loss": (math.log10(lr) + 1.5) ** 2 + 1.0 / epoch, "train_loss": 1.0}

    return epoch_metrics


def test_diverged_trials_teach_the_sampler_to_avoid_their_region():
    """Learning rates from 1e-3 to 10, a quarter of the log range diverges. A diverged trial is
    told PRUNED with the worst value seen so far, so TPE counts its region as bad: over 16 seeds,
    TPE's trials after its 10 random ones diverge far less often than the random ones."""
    random_phase, model_phase = [], []
    for seed in range(16):
        spec = _spec(seed=seed, concurrency=1, budget={"trials": 30, "max_epochs": 3}, scheduler="none",
                     sampler={"name": "tpe", "n_startup_trials": 10},
                     search_space={"learning_rate": {"type": "float", "low": 1e-3, "high": 10.0, "log": True}})
        sim = simulate(spec, _diverging_curve)
        diverged = [bool(t.user_attrs.get(TrialAttr.DIVERGED)) for t in sorted(sim.study.trials, key=lambda t: t.number)]
        worst = None
        for trial in sorted(sim.study.trials, key=lambda t: t.number):  # one at a time: in this order
            if trial.user_attrs.get(TrialAttr.DIVERGED):
                assert trial.state == TrialState.PRUNED and trial.user_attrs[TrialAttr.EPOCHS] == 1
                assert trial.user_attrs[TrialAttr.STOP_REASON].startswith("diverged in epoch 1")
                assert trial.intermediate_values[1] == (10.0 if worst is None else worst)
            else:
                worst = max([*trial.intermediate_values.values(), *([] if worst is None else [worst])])
        random_phase += diverged[:10]
        model_phase += diverged[10:]
    random_rate = sum(random_phase) / len(random_phase)
    model_rate = sum(model_phase) / len(model_phase)
    assert random_rate > 0.2  # the random phase does meet the diverging region
    assert model_rate < 0.5 * random_rate, (random_rate, model_rate)
