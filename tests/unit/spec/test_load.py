"""Study specs: defaults that work, and one clear error naming the field for bad input (the
command line's exit code 2 for them is in tests/unit/test_cli.py)."""

from __future__ import annotations

import pytest
import yaml

from orchestrator.errors import SpecError
from orchestrator.spec import load_spec, spec_from_mapping
from tests.conftest import ROOT


def test_minimal_spec_gets_working_defaults():
    spec = spec_from_mapping({"name": "mini"})
    assert spec.workload == "digits_cnn"
    assert spec.search_space.names == ["learning_rate", "batch_size", "momentum"]
    assert (spec.sampler.name, spec.scheduler.name) == ("tpe", "asha")
    assert spec.scheduler.options["max_epochs"] == spec.budget.max_epochs
    assert spec.storage == "sqlite:///stepsize.db" and spec.tracking_uri == "sqlite:///mlflow.db"
    assert spec.address is None and spec.concurrency is None
    assert (spec.objective.metric, spec.objective.mode) == ("val_loss", "min")


def test_name_defaults_to_file_name_and_overrides_win(tmp_path):
    path = tmp_path / "my study.yaml"
    path.write_text("budget: {trials: 3}\nseed: 1\n")
    spec = load_spec(path, trials=9, seed=4, max_epochs=5)
    assert spec.name == "my-study"
    assert (spec.budget.trials, spec.seed, spec.budget.max_epochs) == (9, 4, 5)


def test_round_trip_through_dict():
    spec = spec_from_mapping({"name": "r", "sampler": {"name": "grid", "points": 3}, "budget": {"time_limit": "1h30m"}})
    assert spec.budget.time_limit_s == 5400
    assert spec_from_mapping(spec.to_dict()) == spec


BAD_SPECS = [
    ({"name": "bad name!"}, "name", "letters"),
    ({"name": "x", "workload": "not a module"}, "workload", "package.module:function"),
    ({"name": "x", "search_space": "nope"}, "search_space", "preset name"),
    ({"name": "x", "search_space": {"lr": {"type": "float", "low": 1, "high": 0}}}, "search_space.lr.low", "not above high"),
    ({"name": "x", "sampler": "tpee"}, "sampler", "Did you mean 'tpe'"),
    ({"name": "x", "sampler": {"name": "tpe", "n_startup": 3}}, "sampler.n_startup", "n_startup_trials"),
    ({"name": "x", "scheduler": "asha2"}, "scheduler", "one of asha"),
    ({"name": "x", "scheduler": {"name": "asha", "grace_period": 0}}, "scheduler.grace_period", "at least 1"),
    ({"name": "x", "scheduler": {"name": "asha", "grace_period": 50}}, "scheduler.grace_period", "not above"),
    ({"name": "x", "scheduler": {"name": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor", "above 1"),
    ({"name": "x", "scheduler": {"name": "asha", "max_epochs": 99}}, "scheduler.max_epochs", "budget.max_epochs"),
    ({"name": "x", "budget": {"trials": 0}}, "budget.trials", "from 1"),
    ({"name": "x", "budget": {"max_epochs": "ten"}}, "budget.max_epochs", "integer"),
    ({"name": "x", "budget": {"time_limit": "soon"}}, "budget.time_limit", "duration"),
    ({"name": "x", "budget": {"trails": 3}}, "budget.trails", "Did you mean `budget.trials`"),
    ({"name": "x", "concurrency": 0}, "concurrency", "auto"),
    ({"name": "x", "resources": {"cpus": 0}}, "resources.cpus", "above 0"),
    ({"name": "x", "resources": {"gpu": 1.5}}, "resources.gpu", "fraction"),
    ({"name": "x", "storage": "mongodb://x"}, "storage", "schemes"),
    ({"name": "x", "storage": "sqlite:////no/such/folder/x.db"}, "storage", "does not exist"),
    ({"name": "x", "tracking_uri": "ftp://x"}, "tracking_uri", "schemes"),
    ({"name": "x", "address": "not an address"}, "address", "HOST:PORT"),
    ({"name": "x", "seed": -1}, "seed", "non-negative"),
    ({"name": "x", "objective": {"metric": "val_loss", "mode": "minimise"}}, "objective.mode", "min or max"),
    ({"name": "x", "sampler": {"name": "grid"}, "search_space": {
        "opt": {"type": "categorical", "choices": ["a", "b"]},
        "m": {"type": "float", "low": 0, "high": 1, "when": {"opt": "a"}}}}, "sampler.name", "conditional"),
    ({"name": "x", "learning_rate": 0.1}, "learning_rate", "one of the fields"),
]


@pytest.mark.parametrize("data, field, words", BAD_SPECS)
def test_bad_field_is_named_with_value_and_what_is_accepted(data, field, words):
    with pytest.raises(SpecError) as info:
        spec_from_mapping(data)
    message = str(info.value)
    assert info.value.field == field
    assert f"`{field}`" in message and "expected" in message and words in message
    assert "\n" not in message


def test_example_study_is_valid():
    spec = load_spec(ROOT / "examples" / "digits.yaml")
    assert spec.name == "digits" and spec.concurrency == 2 and spec.scheduler.name == "asha"
    assert yaml.safe_load(spec.to_yaml())["workload"] == "digits_cnn"


def test_divergence_and_lr_scaling_fields():
    spec = spec_from_mapping({"name": "x", "divergence": {"loss_factor": 8}, "lr_scaling": {"rule": "sqrt", "reference_batch_size": 64}})
    assert spec.divergence.loss_factor == 8.0
    assert (spec.lr_scaling.rule, spec.lr_scaling.reference_batch_size) == ("sqrt", 64)
    assert spec_from_mapping({"name": "x", "lr_scaling": "linear"}).lr_scaling.rule == "linear"
    assert spec_from_mapping({"name": "x", "divergence": {"loss_factor": None}}).divergence.loss_factor is None
    for data, field in [
        ({"divergence": {"loss_factor": 1}}, "divergence.loss_factor"),
        ({"lr_scaling": {"rule": "cubic"}}, "lr_scaling.rule"),
        ({"lr_scaling": {"rule": "linear", "reference_batch_size": 0}}, "lr_scaling.reference_batch_size"),
        ({"lr_scaling": "linear", "search_space": {"momentum": {"type": "float", "low": 0, "high": 1}}}, "lr_scaling.rule"),
    ]:
        with pytest.raises(SpecError) as info:
            spec_from_mapping({"name": "x", **data})
        assert info.value.field == field


# -- resources.workers (DDP trials) -------------------------------------------------------------

def test_resources_workers_default_and_round_trip():
    spec = spec_from_mapping({"name": "x"})
    assert spec.resources.workers == 1
    ddp = spec_from_mapping({"name": "x", "resources": {"cpus": 4, "gpu": 2, "workers": 2}})
    assert (ddp.resources.cpus, ddp.resources.gpu, ddp.resources.workers) == (4.0, 2.0, 2)
    assert spec_from_mapping(ddp.to_dict()).resources == ddp.resources


@pytest.mark.parametrize("resources, field, words", [
    ({"workers": 0}, "resources.workers", "whole number of training processes"),
    ({"workers": 2.5}, "resources.workers", "whole number of training processes"),
    ({"workers": "two"}, "resources.workers", "whole number of training processes"),
    ({"gpu": 1, "workers": 2}, "resources.gpu", "cannot share a GPU"),
    ({"gpu": 0.5, "workers": 2}, "resources.gpu", "cannot share a GPU"),
    ({"gpu": 3, "workers": 2}, "resources.gpu", "for each of the 2 workers"),
    ({"worker": 2}, "resources.worker", "Did you mean `resources.workers`?"),
])
def test_bad_workers_are_refused_with_the_field_and_the_fix(resources, field, words):
    with pytest.raises(SpecError) as caught:
        spec_from_mapping({"name": "x", "resources": resources})
    text = str(caught.value)
    assert f"`{field}`" in text and words in text
