"""Search spaces: presets, every parameter type, conditions, grids and clear errors."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search_spaces import SearchSpace, SpaceError, available_presets, load_preset


def test_default_preset_searches_log_lr_power_of_two_batches_and_momentum():
    space = load_preset()
    dists = space.distributions()
    assert space.names == ["learning_rate", "batch_size", "momentum"]
    assert isinstance(dists["learning_rate"], FloatDistribution) and dists["learning_rate"].log
    batches = dists["batch_size"].choices
    assert all(b > 0 and b & (b - 1) == 0 for b in batches) and len(batches) >= 4
    assert isinstance(dists["momentum"], FloatDistribution) and 0 < dists["momentum"].low < dists["momentum"].high < 1


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_loads_and_samples(name):
    space = load_preset(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    config = space.suggest(study.ask())
    assert set(config) == {p.name for p in space.params if p.is_active(config)}


def test_all_parameter_types():
    space = SearchSpace.from_mapping(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
            "layers": {"type": "int", "low": 1, "high": 4},
            "width": {"type": "int", "low": 16, "high": 256, "log": True},
            "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
            "model": "cnn",
            "nesterov": {"type": "fixed", "value": True},
        }
    )
    d = space.distributions()
    assert d["lr"] == FloatDistribution(1e-4, 1.0, log=True)
    assert d["dropout"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert d["layers"] == IntDistribution(1, 4)
    assert d["width"] == IntDistribution(16, 256, log=True)
    assert d["opt"] == CategoricalDistribution(("sgd", "adam"))
    assert space.fixed_values() == {"model": "cnn", "nesterov": True}
    config = space.suggest(optuna.create_study().ask())
    assert config["model"] == "cnn" and config["nesterov"] is True
    assert 1e-4 <= config["lr"] <= 1.0 and 16 <= config["width"] <= 256
    assert SearchSpace.from_mapping(space.to_mapping()) == space


def test_conditional_parameter_only_sampled_when_its_condition_holds():
    space = SearchSpace.from_mapping(
        {
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        config = space.suggest(study.ask())
        seen.add(config["optimizer"])
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
    assert seen == {"sgd", "adam"}


def test_grid_is_log_spaced_on_log_scales():
    space = load_preset("default")
    grid = space.grid(5)
    assert grid["learning_rate"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    ratios = {round(math.log10(b / a), 6) for a, b in zip(grid["learning_rate"], grid["learning_rate"][1:])}
    assert ratios == {1.0}
    assert grid["batch_size"] == [16, 32, 64, 128, 256]
    assert len(grid["momentum"]) == 5


@pytest.mark.parametrize(
    "mapping, field, words",
    [
        ({"lr": {"type": "float", "low": 1.0, "high": 0.1}}, "search_space.lr.low", "not above high"),
        ({"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "search_space.lr.low", "above 0"),
        ({"lr": {"type": "floaty", "low": 0, "high": 1}}, "search_space.lr.type", "one of float"),
        ({"lr": {"type": "float", "low": "a", "high": 1}}, "search_space.lr.low", "finite number"),
        ({"n": {"type": "int", "low": 1.5, "high": 3}}, "search_space.n.low", "integer"),
        ({"b": {"type": "categorical", "choices": []}}, "search_space.b.choices", "non-empty"),
        ({"b": {"type": "categorical", "choices": [1, 1]}}, "search_space.b.choices", "without repeated"),
        ({"lr": {"type": "float", "low": 1e-3, "high": 1, "log": True, "step": 0.1}}, "search_space.lr.step", "log"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "lo": 0}}, "search_space.lr.lo", "only the keys"),
        ({"m": {"type": "float", "low": 0, "high": 1, "when": {"opt": "sgd"}}}, "search_space.m.when", "defined above"),
        ({"b": [16, 32]}, "search_space.b", "categorical"),
        ({}, "search_space", "non-empty"),
    ],
)
def test_bad_spaces_name_the_field(mapping, field, words):
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_mapping(mapping)
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).count("\n") == 0
