"""Optimizers as a searchable choice: each one trains the digits MLP, reads its own parameters,
and per-layer learning rates become the right torch parameter groups."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn

from orchestrator import TrialContext
from orchestrator.training import OPTIMIZERS, build_optimizer, layer_groups
from orchestrator.workloads import digits
from search_spaces import load_preset

TYPES = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}
DIGITS_LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3, "adagrad": 0.05}


def run_digits(config: dict, epochs: int = 3) -> list[dict]:
    """Train the digits MLP directly (no Ray) and return its per-epoch reports."""
    reports: list[dict] = []
    context = TrialContext(number=0, max_epochs=epochs, seed=0, options={"hidden": 32}, _sink=reports.append)
    digits.train_mlp(config, context)
    return reports


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_every_optimizer_has_a_type():
    assert set(OPTIMIZERS) == set(TYPES)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_trains_digits(name, monkeypatch):
    built: list[torch.optim.Optimizer] = []

    def spy(config, model):
        built.append(build_optimizer(config, model))
        return built[-1]

    monkeypatch.setattr(digits, "build_optimizer", spy)
    reports = run_digits({"optimizer": name, "learning_rate": DIGITS_LR[name], "batch_size": 64})
    assert [type(o) for o in built] == [TYPES[name]]
    assert len(reports) == 3 and all(math.isfinite(r["val_loss"]) for r in reports)
    assert reports[-1]["val_loss"] < reports[0]["val_loss"]
    assert reports[-1]["lr"] == pytest.approx(DIGITS_LR[name])


def test_default_is_sgd_with_momentum_as_before():
    optimizer = build_optimizer({}, mlp())
    assert type(optimizer) is torch.optim.SGD and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.05, 0.9, False, 0.0)


def test_sgd_reads_momentum_nesterov_and_weight_decay():
    config = {"learning_rate": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-4}
    group = build_optimizer(config, mlp()).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.1, 0.8, True, 1e-4)
    # Nesterov needs momentum: a search that samples both does not fail on momentum 0.
    assert build_optimizer({"momentum": 0.0, "nesterov": True}, mlp()).param_groups[0]["nesterov"] is False


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_family_reads_betas_eps_and_weight_decay(name):
    config = {"optimizer": name, "learning_rate": 2e-3, "beta1": 0.85, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.05}
    group = build_optimizer(config, mlp()).param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (2e-3, (0.85, 0.99), 1e-6, 0.05)


def test_adaptive_optimizers_default_to_their_usual_rates_and_adamw_to_decoupled_decay():
    assert build_optimizer({"optimizer": "adam"}, mlp()).param_groups[0]["lr"] == 1e-3
    assert build_optimizer({"optimizer": "adamw"}, mlp()).param_groups[0]["weight_decay"] == 0.01
    assert build_optimizer({"optimizer": "Adam"}, mlp()).param_groups[0]["weight_decay"] == 0.0


def test_rmsprop_and_adagrad_read_their_parameters():
    config = {"optimizer": "rmsprop", "momentum": 0.5, "alpha": 0.95, "eps": 1e-7}
    group = build_optimizer(config, mlp()).param_groups[0]
    assert (group["momentum"], group["alpha"], group["eps"]) == (0.5, 0.95, 1e-7)
    assert build_optimizer({"optimizer": "rmsprop"}, mlp()).param_groups[0]["momentum"] == 0.0
    group = build_optimizer({"optimizer": "adagrad", "lr_decay": 1e-3, "weight_decay": 1e-4}, mlp()).param_groups[0]
    assert (group["lr"], group["lr_decay"], group["weight_decay"]) == (1e-2, 1e-3, 1e-4)


def test_unknown_optimizer_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"'lamb'.*sgd, adam, adamw, rmsprop, adagrad"):
        build_optimizer({"optimizer": "lamb"}, mlp())


@pytest.mark.parametrize(
    "config, key",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"momentum": 1.5}, "momentum"),
        ({"optimizer": "adam", "beta2": 1.0}, "beta2"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"head_lr_multiplier": 0}, "head_lr_multiplier"),
        ({"layer_lr_decay": 1.5}, "layer_lr_decay"),
    ],
)
def test_bad_values_name_their_key(config, key):
    with pytest.raises(ValueError, match=f"config\\['{key}'\\]"):
        build_optimizer(config, mlp())


def test_layer_groups_are_top_level_children_with_parameters():
    assert [(name, len(params)) for name, params in layer_groups(mlp())] == [("0", 2), ("2", 2), ("4", 2)]
    assert [name for name, _ in layer_groups(nn.Linear(3, 2))] == [""]  # a bare layer is its own head


def test_head_lr_multiplier_scales_only_the_head():
    model = mlp()
    optimizer = build_optimizer({"learning_rate": 0.1, "head_lr_multiplier": 5.0, "weight_decay": 1e-4}, model)
    groups = optimizer.param_groups
    assert [g["layer"] for g in groups] == ["0", "2", "4"]
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 0.1, 0.5])
    assert groups[-1]["params"] == list(model[4].parameters())
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_layer_lr_decay_is_geometric_back_from_the_head():
    optimizer = build_optimizer({"optimizer": "adam", "learning_rate": 0.01, "layer_lr_decay": 0.5}, mlp())
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.0025, 0.005, 0.01])


def test_per_layer_rates_count_own_and_shared_parameters_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.body = nn.Linear(3, 3)
            self.head = nn.Linear(3, 3)
            self.head.weight = self.body.weight  # tied: counts in the body

    model = Tied()
    groups = build_optimizer({"learning_rate": 1.0, "layer_lr_decay": 0.1}, model).param_groups
    assert [(g["layer"], len(g["params"]), g["lr"]) for g in groups] == [
        ("", 1, pytest.approx(0.01)), ("body", 2, pytest.approx(0.1)), ("head", 1, 1.0)
    ]


def test_head_multiplier_and_layer_decay_are_exclusive():
    with pytest.raises(ValueError, match="head_lr_multiplier and layer_lr_decay"):
        build_optimizer({"head_lr_multiplier": 2.0, "layer_lr_decay": 0.5}, mlp())


def test_optimizers_preset_samples_each_optimizers_own_parameters():
    space = load_preset("optimizers")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    own = {
        "sgd": {"momentum", "nesterov"},
        "rmsprop": {"momentum", "alpha"},
        "adam": {"beta1", "beta2"},
        "adamw": {"beta1", "beta2"},
        "adagrad": set(),
    }
    conditional = {"momentum", "nesterov", "beta1", "beta2", "alpha"}
    seen = set()
    for _ in range(40):
        config = space.suggest(study.ask())
        seen.add(config["optimizer"])
        assert set(config) & conditional == own[config["optimizer"]]
        assert type(build_optimizer(config, mlp())) is TYPES[config["optimizer"]]
    assert seen == set(OPTIMIZERS)
