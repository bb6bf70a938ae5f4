"""The driver's in-memory view of its study (OwnedStudyStorage): a search played through it on a
real SQLite file draws the same configurations and commits the same trials as one read back from
the database every time; what it answers equals a fresh read of the database; other studies in
the same storage are passed through; a trial's end is read back with the storage's timestamps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.run.simulate import simulate
from orchestrator.spec import spec_from_mapping
from orchestrator.study.owned import OwnedStudyStorage, own_study, owned_view
from orchestrator.study.storage import create_study, make_storage, storage_url

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _spec(folder: Path, trials: int = 40) -> Any:
    return spec_from_mapping({
        "name": "owned",
        "workload": "digits_mlp",
        "storage": f"sqlite:///{folder}/optuna.db",
        "search_space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                         "batch_size": {"type": "int", "low": 16, "high": 256, "log": True},
                         "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}},
        "budget": {"trials": trials, "max_epochs": 9},
        "concurrency": 4,
        "seed": 3,
    })


def _curve(params: dict[str, Any]):
    best = abs(math.log10(params["learning_rate"]) + 2) + (0.1 if params["optimizer"] == "sgd" else 0.0)
    return lambda epoch: {"val_loss": best + 1.0 / epoch + params["batch_size"] / 1e4}


def _stored(url: str, name: str) -> list[tuple]:
    """Everything the database holds of each trial, read by plain Optuna."""
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    return [(t.number, t.state, t.value, t.params, t.intermediate_values,
             {k: v for k, v in t.user_attrs.items()}, t.system_attrs) for t in trials]


def test_a_search_through_the_owned_view_draws_and_commits_what_a_plain_one_does(tmp_path: Path) -> None:
    runs = {}
    for owned in (True, False):
        folder = tmp_path / str(owned)
        folder.mkdir()
        url = f"sqlite:///{folder}/optuna.db"
        sim = simulate(_spec(folder), _curve, storage=make_storage(url), owned=owned)
        assert isinstance(sim.study._storage, OwnedStudyStorage) is owned
        runs[owned] = (sim.configs, _stored(url, sim.study.study_name), sim)
    assert runs[True][0] == runs[False][0]  # the same configurations, in the same order
    assert len(runs[True][1]) == 40
    assert {row[1] for row in runs[True][1]} == {TrialState.COMPLETE, TrialState.PRUNED}
    assert runs[True][1] == runs[False][1]  # and the same trials committed, attribute for attribute
    # What the view answers from memory is what the database holds.
    sim = runs[True][2]
    from_memory = sim.study.get_trials(deepcopy=False)
    from_disk = optuna.load_study(study_name=sim.study.study_name,
                                  storage=f"sqlite:///{tmp_path}/True/optuna.db").get_trials(deepcopy=False)
    assert from_memory == from_disk
    assert [t.datetime_complete for t in from_memory] == [t.datetime_complete for t in from_disk]


def test_reads_of_the_owned_study_do_not_go_back_to_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = own_study(create_study(_spec(tmp_path)))
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.5, 1)
    storage = study._storage
    inner = storage.inner
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(inner, name)

    storage.inner = Counting()
    for _ in range(3):
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert calls == []
    assert running[0].params == {"x": trial.params["x"]} and running[0].intermediate_values == {1: 0.5}
    assert storage.get_trial(trial._trial_id).intermediate_values == {1: 0.5}
    assert calls == []
    study.tell(trial, 0.25)
    assert "set_trial_state_values" in calls and "get_trial" in calls  # written, then read back once
    done = study.get_trials(deepcopy=False)[0]
    assert done.state == TrialState.COMPLETE and done.value == 0.25 and done.datetime_complete is not None
    assert storage_url(study) == url


def test_other_studies_in_the_same_storage_are_passed_through(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = make_storage(url)
    optuna.create_study(study_name="mine", storage=storage)
    other = optuna.create_study(study_name="other", storage=storage)
    mine = owned_view("mine", storage, optuna.samplers.RandomSampler(seed=0))
    other.tell(other.ask(), 1.0)
    outsider = optuna.load_study(study_name="other", storage=mine._storage)
    assert [t.value for t in outsider.get_trials()] == [1.0]  # not from the owned study's copy
    mine.tell(mine.ask(), 2.0)
    assert [t.value for t in optuna.load_study(study_name="mine", storage=url).trials] == [2.0]


def test_own_study_needs_a_study_from_the_storage_module() -> None:
    with pytest.raises(ValueError, match="orchestrator.study.storage"):
        own_study(optuna.create_study())
