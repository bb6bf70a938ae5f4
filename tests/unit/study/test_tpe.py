"""stepsize's TPE sampler draws what Optuna's TPESampler draws, at a fraction of the cost."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe import _truncnorm
from optuna.trial import TrialState

from orchestrator._compat import optuna_tpe as tpe
from orchestrator._compat.optuna_tpe import StudyTPESampler
from orchestrator.spec import spec_from_mapping
from orchestrator.study.samplers import build_sampler

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _suggest_all(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.suggest_int("batch_size", 16, 512, log=True)
    trial.suggest_int("layers", 1, 5)
    trial.suggest_float("momentum", 0.1, 0.99)
    trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw"])


def _history(n: int) -> optuna.Study:
    """A study of ``n`` random trials: most pruned at rungs with intermediate values, some
    complete, the last two still running."""
    rng = random.Random(1)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(n):
        trial = study.ask()
        _suggest_all(trial)
        if i >= n - 2:
            trial.report(rng.random(), 1)
            continue
        epochs = rng.choice([1, 1, 3, 9])
        for epoch in range(1, epochs + 1):
            trial.report(rng.random(), epoch)
        complete = epochs == 9
        study.tell(trial, rng.random() if complete else None, state=TrialState.COMPLETE if complete else TrialState.PRUNED)
    return study


def _draws(sampler: optuna.samplers.BaseSampler, n_history: int, asks: int) -> list[dict]:
    study = _history(n_history)
    study.sampler = sampler
    out = []
    for k in range(asks):
        trial = study.ask()
        _suggest_all(trial)
        out.append(trial.params)
        if k % 2:  # alternate: leave some running (constant liar sees them), finish others
            study.tell(trial, float(k), state=TrialState.COMPLETE)
    return out


@pytest.mark.parametrize("multivariate", [False, True])
def test_draws_equal_optunas_tpe_for_the_same_seed(multivariate, monkeypatch):
    kwargs = dict(seed=3, n_startup_trials=10, multivariate=multivariate, constant_liar=True, n_ei_candidates=24)
    ours = _draws(StudyTPESampler(**kwargs), 120, 12)
    # The split reused across parameters changes nothing: bit-equal to Optuna's sampler...
    assert _draws(optuna.samplers.TPESampler(**kwargs), 120, 12) == ours
    assert len({tuple(sorted(p.items())) for p in ours}) == 12  # real draws, not one value repeated
    # ...and with Optuna's own log-CDF (as if stepsize had never been imported) the same values,
    # floats to within rounding.
    monkeypatch.setattr(_truncnorm, "_log_ndtr", tpe._optuna_log_ndtr)
    stock = _draws(optuna.samplers.TPESampler(**kwargs), 120, 12)
    for mine, theirs in zip(ours, stock):
        assert mine.keys() == theirs.keys()
        for name, value in mine.items():
            if isinstance(value, float):
                assert value == pytest.approx(theirs[name], rel=1e-9), name
            else:
                assert value == theirs[name], name


def test_vectorized_log_cdf_matches_optunas():
    points = np.concatenate([np.linspace(-60, 40, 4001), [-20.0, -19.999, 6.0, 6.0001, 0.0]])
    ours = tpe._vectorized_log_ndtr(points)
    theirs = tpe._optuna_log_ndtr(points)
    assert ours.shape == theirs.shape and ours.dtype == float
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-300)  # Optuna loses digits near a = 6, SciPy does not


def test_split_is_kept_within_a_trial_and_dropped_at_every_ask_and_tell():
    study = _history(40)
    sampler = StudyTPESampler(seed=0, n_startup_trials=5, constant_liar=True)
    study.sampler = sampler
    asking = study.ask()
    me = study._storage.get_trial(asking._trial_id)
    first = sampler._split(study, me)
    assert sampler._split(study, me) == first and sampler._split(study, me)[0] is first[0]  # kept
    other = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING and t.number != me.number][0]
    study.tell(other.number, 10.0)  # a tell: now the best trial, it must move below
    below, above = sampler._split(study, me)
    assert other.number in [t.number for t in below]
    assert me.number not in [t.number for t in below + above]
    study.ask()  # an ask: the new running trial joins the others
    assert len(sampler._split(study, me)[1]) == len(above) + 1


def test_the_spec_default_builds_studys_tpe():
    spec = spec_from_mapping({"name": "x"})
    assert isinstance(build_sampler(spec).start, StudyTPESampler)  # beside the rung model (test_rung_model)


def test_history_models_the_best_of_all_trials_and_only_the_most_recent_others():
    study = _history(300)
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best.number < 150  # an old trial: it must stay below although it is outside the window
    sampler = StudyTPESampler(seed=0, n_startup_trials=5, constant_liar=True, history=100)
    study.sampler = sampler
    me = study._storage.get_trial(study.ask()._trial_id)
    below, above = sampler._split(study, me)
    everything = StudyTPESampler(seed=0, n_startup_trials=5, constant_liar=True)._split(study, me)
    assert [t.number for t in below] == [t.number for t in everything[0]]  # the good ones: from all trials
    assert best.number in [t.number for t in below]
    assert len(everything[1]) > 200 and len(above) == 100
    assert [t.number for t in above] == [t.number for t in everything[1]][-100:]  # the most recent others


def test_a_history_longer_than_the_study_draws_what_stock_tpe_draws():
    kwargs = dict(seed=3, n_startup_trials=10, constant_liar=True, n_ei_candidates=24)
    assert _draws(StudyTPESampler(history=1000, **kwargs), 120, 12) == _draws(optuna.samplers.TPESampler(**kwargs), 120, 12)


def test_the_spec_sets_the_history_and_null_models_every_trial():
    space = {"lr": {"type": "float", "low": 1e-3, "high": 1.0}}
    assert build_sampler(spec_from_mapping({"name": "x", "search_space": space})).start._history == 1000
    unbounded = spec_from_mapping({"name": "x", "search_space": space, "sampler": {"name": "tpe", "history": None}})
    assert build_sampler(unbounded).start._history is None
