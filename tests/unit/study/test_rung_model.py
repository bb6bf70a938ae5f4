"""The rung model: a multivariate TPE fitted on the study's highest well-filled rung proposes
beside the study's own TPE (``sampler.rung_model``)."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator._compat.optuna_tpe import StudyTPESampler
from orchestrator.cli import _summary_text
from orchestrator.errors import SpecError
from orchestrator.keys import TrialAttr
from orchestrator.run.progress import progress_line
from orchestrator.run.simulate import simulate
from orchestrator.spec import spec_from_mapping
from orchestrator.study.samplers import build_sampler
from orchestrator.study.samplers.rung_model import RungModelSampler, epochs_reported, rung_view
from orchestrator.study.summary import summarize

optuna.logging.set_verbosity(optuna.logging.ERROR)
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "float", "low": 0.0, "high": 1.0}}


def _study_with_rungs() -> optuna.Study:
    """12 trials (x, y) pruned at epoch 1, 6 pruned at epoch 3, 3 complete at epoch 9 (value: x at each
    epoch), one failed, one running at epoch 2, one running with no report."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for epochs in [1] * 12 + [3] * 6 + [9] * 3:
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        trial.suggest_float("y", 0, 1)
        for epoch in range(1, epochs + 1):
            trial.report(x * epoch, epoch)
        study.tell(trial, x * 9 if epochs == 9 else None, state=TrialState.COMPLETE if epochs == 9 else TrialState.PRUNED)
    failed = study.ask()
    failed.suggest_float("x", 0, 1)
    failed.suggest_float("y", 0, 1)
    failed.report(100.0, 5)
    study.tell(failed, state=TrialState.FAIL)
    running = study.ask()
    running.suggest_float("x", 0, 1)
    running.suggest_float("y", 0, 1)
    running.report(0.5, 1)
    running.report(1.0, 2)
    study.ask()  # running, nothing suggested yet
    return study


def test_the_view_is_the_highest_epoch_that_enough_trials_reached():
    study = _study_with_rungs()
    view, step = rung_view(study, min_trials=9)
    assert step == 3  # 9 trials reached epoch 3 (6 pruned there, 3 complete); only 3 reached 4..9
    complete = view.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 9
    assert all(math.isclose(t.value, t.params["x"] * 3) for t in complete)  # each trial's value at epoch 3
    running = view.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 1 and running[0].params  # the running trial short of epoch 3; not the failed one
    assert rung_view(study, min_trials=3)[1] == 9
    assert rung_view(study, min_trials=23) is None  # no epoch has 23 trials
    assert rung_view(study, min_trials=5)[1] == 3
    assert rung_view(study, min_trials=5, recent=5)[1] == 2  # only the 5 latest trials counted
    assert epochs_reported(study) == 12 + 6 * 3 + 3 * 9 + 1 + 2


def test_the_rung_model_proposes_from_the_view_and_tpe_answers_until_then():
    study = _study_with_rungs()
    start = StudyTPESampler(seed=0, n_startup_trials=5, constant_liar=True)
    model = optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=0)
    sampler = RungModelSampler(start, model, min_trials=30)
    study.sampler = sampler
    study.ask().suggest_float("x", 0, 1)
    assert sampler.rung_proposals == 0 and sampler.last_rung is None  # no epoch has 30 trials yet
    sampler.min_trials = 9
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    assert sampler.rung_proposals == 1 and sampler.last_rung == 3


def test_the_budget_share_holds_the_rung_model_back():
    study = _study_with_rungs()
    share = {"spent": 0.1}
    start = StudyTPESampler(seed=0, n_startup_trials=5)
    sampler = RungModelSampler(start, optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=0),
                               min_trials=9, after=0.5, progress=lambda _: share["spent"])
    study.sampler = sampler
    study.ask().suggest_float("x", 0, 1)
    assert sampler.rung_proposals == 0
    share["spent"] = 0.5
    study.ask().suggest_float("x", 0, 1)
    assert sampler.rung_proposals == 1


def _spec(**sampler: object) -> object:
    return spec_from_mapping({"name": "r", "search_space": SPACE, "budget": {"trials": 80, "max_epochs": 27},
                              "objective": {"metric": "acc", "mode": "max"}, "seed": 3,
                              "sampler": {"name": "tpe", **sampler}})


def test_the_default_fits_a_model_per_rung_under_asha_and_not_without_a_scheduler():
    sampler = build_sampler(_spec())
    assert isinstance(sampler, RungModelSampler) and isinstance(sampler.start, StudyTPESampler)
    assert sampler.min_trials == 20 and sampler.after == 0.25 and sampler.recent == 1000
    assert sampler.local_moves == 0.5
    assert build_sampler(_spec(rung_model_local_moves=0)).local_moves == 0
    assert not isinstance(build_sampler(_spec(rung_model=False)), RungModelSampler)
    plain = spec_from_mapping({"name": "r", "search_space": SPACE, "scheduler": "none"})
    assert isinstance(build_sampler(plain), StudyTPESampler)


@pytest.mark.parametrize("options, field", [
    ({"rung_model_after": 1.0}, "sampler.rung_model_after"),
    ({"rung_model_after": -0.1}, "sampler.rung_model_after"),
    ({"rung_model_after": "late"}, "sampler.rung_model_after"),
    ({"rung_model_min_trials": 1}, "sampler.rung_model_min_trials"),
    ({"rung_model_min_trials": 2.5}, "sampler.rung_model_min_trials"),
    ({"rung_model": "yes"}, "sampler.rung_model"),
    ({"rung_model_local_moves": 1.5}, "sampler.rung_model_local_moves"),
    ({"rung_model_local_moves": "half"}, "sampler.rung_model_local_moves"),
])
def test_bad_rung_model_options_name_the_field(options, field):
    with pytest.raises(SpecError) as error:
        _spec(**options)
    assert field in str(error.value)


def _curve(params: dict) -> object:
    peak = -((params["x"] - 0.7) ** 2) - (params["y"] - 0.2) ** 2
    return lambda epoch: {"acc": peak * (1 + 1 / epoch)}


def test_a_search_under_asha_uses_the_rung_model_and_finds_the_peak():
    sim = simulate(_spec(rung_model_after=0.0), _curve)
    sampler = sim.study.sampler
    assert isinstance(sampler, RungModelSampler)
    assert sampler.rung_proposals > 20 and sampler.last_rung >= 3  # ASHA's first rung (grace 3) or higher
    best = sim.study.best_trial.params
    assert abs(best["x"] - 0.7) < 0.15 and abs(best["y"] - 0.2) < 0.15
    again = simulate(_spec(rung_model_after=0.0), _curve)  # seeded: the same search again
    assert [t.params for t in again.study.trials] == [t.params for t in sim.study.trials]


def test_the_trials_the_rung_model_proposed_are_marked_and_counted():
    sim = simulate(_spec(rung_model_after=0.0, rung_model_min_trials=10), _curve)
    sampler = sim.study.sampler
    marked = [t for t in sim.study.trials if TrialAttr.RUNG_MODEL_EPOCH in t.user_attrs]
    assert 0 < len(marked) == sampler.rung_proposals < len(sim.study.trials)
    first = min(t.number for t in marked)
    assert all(TrialAttr.RUNG_MODEL_EPOCH not in t.user_attrs for t in sim.study.trials[:first])
    assert all(3 <= t.user_attrs[TrialAttr.RUNG_MODEL_EPOCH] <= 27 for t in marked)  # from ASHA's first rung on
    progress = sim.searcher.progress
    assert progress.rung_model_epoch == sampler.last_rung
    assert f"rung model at epoch {sampler.last_rung}" in progress_line(progress, "acc")
    summary = summarize(sim.study, _spec())
    assert summary.rung_model_trials == len(marked) and summary.to_dict()["rung_model_trials"] == len(marked)
    assert f"{len(marked)} proposed by the rung model" in _summary_text(summary)
    alone = simulate(_spec(rung_model=False), _curve)
    assert not any(TrialAttr.RUNG_MODEL_EPOCH in t.user_attrs for t in alone.study.trials)
    assert "rung model" not in progress_line(alone.searcher.progress, "acc")


def test_while_the_view_is_thin_a_multivariate_study_tpe_draws_what_it_draws_alone():
    def draw(wrap: bool) -> dict:
        study = _study_with_rungs()
        start = StudyTPESampler(seed=0, n_startup_trials=5, multivariate=True)
        study.sampler = RungModelSampler(start, optuna.samplers.TPESampler(seed=0, multivariate=True),
                                         min_trials=100) if wrap else start
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.suggest_float("y", 0, 1)
        return trial.params

    assert draw(wrap=True) == draw(wrap=False)  # jointly, as alone: not each parameter on its own


def test_local_moves_step_from_the_rungs_best_trials_in_their_share_of_the_proposals():
    def sampler_for(share: float) -> RungModelSampler:
        return RungModelSampler(StudyTPESampler(seed=0, n_startup_trials=5),
                                optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=0),
                                min_trials=9, local_moves=share, seed=4)

    study = _study_with_rungs()
    study.sampler = every = sampler_for(1.0)
    view, _ = rung_view(study, min_trials=9)
    best_x = sorted(t.params["x"] for t in view.get_trials(states=(TrialState.COMPLETE,)))[-5:]
    for _ in range(20):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        trial.suggest_float("y", 0, 1)
        assert 0.0 <= x <= 1.0
        study.tell(trial, state=TrialState.FAIL)  # out of the next views, so they stay the same
    assert every.local_proposals == every.rung_proposals == 20
    xs = [t.params["x"] for t in study.trials[-20:]]
    assert sum(min(abs(x - b) for b in best_x) < 0.3 for x in xs) >= 15  # steps of 0.2 from the five best

    study = _study_with_rungs()
    study.sampler = none = sampler_for(0.0)
    study.ask().suggest_float("x", 0, 1)
    assert none.rung_proposals == 1 and none.local_proposals == 0


def test_a_search_with_local_moves_finds_the_peak_and_repeats_with_its_seed():
    sim = simulate(_spec(rung_model_after=0.0, rung_model_local_moves=0.5), _curve)
    sampler = sim.study.sampler
    assert 0 < sampler.local_proposals < sampler.rung_proposals
    best = sim.study.best_trial.params
    assert abs(best["x"] - 0.7) < 0.15 and abs(best["y"] - 0.2) < 0.15
    again = simulate(_spec(rung_model_after=0.0, rung_model_local_moves=0.5), _curve)
    assert [t.params for t in again.study.trials] == [t.params for t in sim.study.trials]
