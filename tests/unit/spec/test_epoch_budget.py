"""``budget.epochs``: the epochs a study may train over all its trials. Valid values, the refusals
naming the field, the trial count it bounds, the overrides and the stored round trip."""

from __future__ import annotations

import pytest
import yaml

from orchestrator.errors import SpecError
from orchestrator.spec import load_spec, spec_from_mapping, with_overrides


def _spec(**budget):
    return spec_from_mapping({"name": "x", "budget": budget})


def test_no_epoch_budget_by_default():
    budget = _spec().budget
    assert budget.epochs is None and budget.trials == 20 and not budget.trials_from_epochs
    assert "epochs" not in _spec().to_dict()["budget"]


def test_without_a_trial_count_the_epoch_budget_bounds_the_trials():
    budget = _spec(epochs=500, max_epochs=4).budget
    assert (budget.epochs, budget.trials, budget.trials_from_epochs) == (500, 500, True)  # a trial trains >= 1 epoch
    assert _spec(epochs=5_000_000, max_epochs=4).budget.trials == 1_000_000
    both = _spec(epochs=500, trials=30, max_epochs=4).budget
    assert (both.epochs, both.trials, both.trials_from_epochs) == (500, 30, False)  # whichever is reached first
    assert _spec(epochs=20, trials=None).budget.trials == 20  # null: no trial count of its own


@pytest.mark.parametrize("epochs", [0, -3, 3, "ten", "24", 2.5, 24.0, True, [24], {"n": 24}])
def test_bad_epoch_budgets_are_refused_naming_the_field(epochs):
    with pytest.raises(SpecError) as info:
        _spec(epochs=epochs, max_epochs=4)
    message = str(info.value)
    assert info.value.field == "budget.epochs" and info.value.value == epochs
    assert message.startswith("`budget.epochs` is ") and "expected" in message
    assert "at least budget.max_epochs (4)" in message and "\n" not in message


def test_a_null_trial_count_needs_an_epoch_budget():
    with pytest.raises(SpecError) as info:
        _spec(trials=None)
    assert info.value.field == "budget.trials" and "beside budget.epochs" in str(info.value)


def test_an_unknown_budget_field_is_refused_with_a_suggestion():
    with pytest.raises(SpecError) as info:
        _spec(epoch=24)
    assert info.value.field == "budget.epoch" and "Did you mean `budget.epochs`" in str(info.value)


@pytest.mark.parametrize("budget", [
    {"epochs": 24, "max_epochs": 4},
    {"epochs": 24, "trials": 10, "max_epochs": 4, "time_limit": "30m"},
    {"trials": 3},
])
def test_stored_round_trip_keeps_the_epoch_budget(budget):
    spec = _spec(**budget)
    for data in (spec.to_dict(), spec.to_stored_dict(), yaml.safe_load(spec.to_yaml())):
        assert spec_from_mapping(data) == spec


def test_overrides_set_and_raise_the_epoch_budget(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("budget: {max_epochs: 4}\n")
    spec = load_spec(path, epochs=40)
    assert (spec.budget.epochs, spec.budget.trials) == (40, 40)
    raised = with_overrides(spec, epochs=100)  # a trial count that came from the epochs follows them
    assert (raised.budget.epochs, raised.budget.trials, raised.budget.trials_from_epochs) == (100, 100, True)
    capped = with_overrides(raised, trials=12)
    assert (capped.budget.epochs, capped.budget.trials, capped.budget.trials_from_epochs) == (100, 12, False)
    with pytest.raises(SpecError) as info:
        with_overrides(spec, epochs=2)
    assert info.value.field == "budget.epochs"
