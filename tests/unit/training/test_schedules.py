"""LR schedules follow their definitions (on the digits workload's reported LR where an epoch is
fine enough, on a tiny model batch by batch where it is not). LR scaling with the batch size is in
test_lr_scaling.py."""

from __future__ import annotations

import math

import optuna
import pytest
from torch import nn

from orchestrator import TrialContext
from orchestrator.training import SCHEDULES, build_optimizer, build_scheduler
from orchestrator.workloads import digits
from search_spaces import load_preset

LR = 0.1


def run_digits(config: dict, epochs: int) -> list[dict]:
    reports: list[dict] = []
    context = TrialContext(number=0, max_epochs=epochs, seed=0, options={"hidden": 32}, _sink=reports.append)
    digits.train_mlp({"learning_rate": LR, **config}, context)
    return reports


def trajectory(
    config: dict, epochs: int = 4, steps: int = 10, optimizer: dict | None = None, val_losses: list[float] | None = None
) -> tuple[list[float], list[float]]:
    """The LR and momentum (beta1 for Adam) each batch of a tiny model trains with."""
    model = nn.Linear(2, 2)
    opt = build_optimizer({"learning_rate": LR, **(optimizer or {})}, model)
    schedule = build_scheduler(config, opt, steps, epochs)
    lrs, momenta = [], []
    for epoch in range(epochs):
        for _ in range(steps):
            group = opt.param_groups[0]
            lrs.append(group["lr"])
            momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
            opt.step()
            schedule.step_batch()
        schedule.step_epoch(val_losses[epoch] if val_losses else 1.0)
    return lrs, momenta


def test_constant_keeps_the_rate():
    reports = run_digits({"schedule": "constant"}, epochs=3)
    assert [(r["lr"], r["lr_min"], r["lr_max"]) for r in reports] == [(LR, LR, LR)] * 3
    assert set(trajectory({})[0]) == {LR}  # constant is the default


def test_step_decay_drops_by_gamma_every_step_size_epochs():
    reports = run_digits({"schedule": "step", "step_size": 2, "gamma": 0.5}, epochs=5)
    assert [r["lr"] for r in reports] == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4])
    assert all(r["lr_min"] == r["lr_max"] == r["lr"] for r in reports)  # one rate per epoch


def test_exponential_multiplies_by_gamma_each_epoch():
    reports = run_digits({"schedule": "exponential", "gamma": 0.8}, epochs=4)
    assert [r["lr"] for r in reports] == pytest.approx([LR * 0.8**e for e in range(4)])


def test_cosine_anneals_per_epoch_to_its_minimum_at_the_last_epoch():
    reports = run_digits({"schedule": "cosine", "min_lr_ratio": 0.1}, epochs=5)
    lrs = [r["lr"] for r in reports]
    floor = LR * 0.1
    assert lrs == pytest.approx([floor + (LR - floor) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)])
    assert lrs[0] == pytest.approx(LR) and lrs[-1] == pytest.approx(floor) == min(lrs)


def test_warmup_cosine_rises_linearly_then_anneals_to_the_minimum_at_the_last_batch():
    lrs, _ = trajectory({"schedule": "warmup_cosine", "warmup_epochs": 2, "min_lr_ratio": 0.05}, epochs=5, steps=10)
    warmup = lrs[:21]
    assert warmup[0] == pytest.approx(LR / 21) and warmup[-1] == pytest.approx(LR)
    assert [b - a for a, b in zip(warmup, warmup[1:])] == pytest.approx([LR / 21] * 20)  # linear
    annealing = lrs[20:]
    assert all(b < a for a, b in zip(annealing, annealing[1:]))
    assert lrs[-1] == pytest.approx(LR * 0.05) == min(lrs[20:])
    assert lrs[35] == pytest.approx(LR * (0.05 + 0.95 * (1 + math.cos(math.pi * 15 / 29)) / 2))


def test_warmup_cosine_on_digits_reports_the_rise_within_an_epoch_and_the_floor_last():
    reports = run_digits({"schedule": "warmup_cosine", "warmup_epochs": 1, "min_lr_ratio": 0.1}, epochs=3)
    assert reports[0]["lr_min"] < 0.1 * LR and reports[0]["lr_max"] == pytest.approx(LR, rel=0.05)
    assert reports[1]["lr_max"] == pytest.approx(LR)
    assert reports[-1]["lr"] == pytest.approx(0.1 * LR) == reports[-1]["lr_min"]


def test_onecycle_peaks_at_pct_start_and_cycles_sgd_momentum_inversely():
    config = {"schedule": "onecycle", "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100}
    lrs, momenta = trajectory(config, epochs=4, steps=10, optimizer={"momentum": 0.9})
    peak = lrs.index(max(lrs))
    assert peak == 9 and lrs[peak] == pytest.approx(LR)  # 25% of 40 steps
    assert lrs[0] == pytest.approx(LR / 10) and lrs[-1] == pytest.approx(LR / 1000)
    assert all(b > a for a, b in zip(lrs[: peak + 1], lrs[1 : peak + 1]))
    assert all(b < a for a, b in zip(lrs[peak:], lrs[peak + 1 :]))
    assert [momenta[0], momenta[peak], momenta[-1]] == pytest.approx([0.9, 0.8, 0.9])
    assert all((b - a) * (mb - ma) <= 1e-12 for a, b, ma, mb in zip(lrs, lrs[1:], momenta, momenta[1:]))


def test_onecycle_momentum_cycling_follows_the_optimizer():
    _, momenta = trajectory({"schedule": "onecycle"}, optimizer={"momentum": 0.0})
    assert set(momenta) == {0.0}  # SGD without momentum keeps none
    _, betas = trajectory({"schedule": "onecycle"}, optimizer={"optimizer": "adam", "beta1": 0.9})
    assert min(betas) == pytest.approx(0.8) and betas[0] == pytest.approx(0.9)  # torch cycles Adam's beta1
    _, momenta = trajectory({"schedule": "onecycle", "cycle_momentum": False})
    assert set(momenta) == {0.9}
    with pytest.raises(ValueError, match="no momentum"):
        trajectory({"schedule": "onecycle", "cycle_momentum": True}, optimizer={"optimizer": "adagrad"})


def test_onecycle_holds_its_final_rate_past_the_planned_steps():
    opt = build_optimizer({"learning_rate": LR}, nn.Linear(2, 2))
    schedule = build_scheduler({"schedule": "onecycle", "max_epochs": 2}, opt, 5)
    for _ in range(15):  # 5 more than planned: no error from OneCycleLR
        opt.step()
        schedule.step_batch()
    assert schedule.lr == pytest.approx(LR / 25 / 1e4)


def test_cyclic_oscillates_between_base_and_max_with_momentum_inverse():
    config = {"schedule": "cyclic", "cyclic_base_ratio": 0.2, "cycle_epochs": 0.5}
    lrs, momenta = trajectory(config, epochs=3, steps=10, optimizer={"momentum": 0.9})
    assert min(lrs) == pytest.approx(0.2 * LR) and max(lrs) == pytest.approx(LR)
    assert [lrs[i] for i in (0, 10, 20)] == pytest.approx([0.2 * LR] * 3)  # a full cycle per epoch
    assert [lrs[i] for i in (5, 15, 25)] == pytest.approx([LR] * 3)
    assert [momenta[i] for i in (0, 5, 10)] == pytest.approx([0.9, 0.8, 0.9])
    _, momenta = trajectory(config, optimizer={"momentum": 0.0})
    assert set(momenta) == {0.0}


def test_plateau_reduces_after_patience_epochs_without_improvement():
    losses = [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.8]
    config = {"schedule": "plateau", "plateau_factor": 0.5, "plateau_patience": 2}
    lrs, _ = trajectory(config, epochs=7, steps=2, val_losses=losses)
    per_epoch = lrs[::2]
    # Epochs 2-4 do not beat 0.9; after the third of them (patience 2 exceeded) the rate halves.
    assert per_epoch == pytest.approx([LR] * 5 + [LR / 2] * 2)


def test_plateau_needs_the_validation_loss():
    schedule = build_scheduler({"schedule": "plateau"}, build_optimizer({}, nn.Linear(2, 2)), 3)
    with pytest.raises(ValueError, match="validation loss"):
        schedule.step_epoch()


@pytest.mark.parametrize("name", ["step", "exponential", "cosine", "plateau"])
def test_epoch_schedules_ignore_batch_steps(name):
    lrs, _ = trajectory({"schedule": name, "step_size": 1, "gamma": 0.5, "plateau_patience": 0}, epochs=3, steps=5)
    assert all(len(set(lrs[e * 5 : e * 5 + 5])) == 1 for e in range(3))
    assert lrs[-1] < lrs[0]


def test_schedules_keep_per_layer_rate_ratios():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    opt = build_optimizer({"learning_rate": LR, "layer_lr_decay": 0.5}, model)
    schedule = build_scheduler({"schedule": "cosine", "min_lr_ratio": 0.1}, opt, 1, epochs=3)
    for _ in range(2):
        opt.step()
        schedule.step_epoch()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.01])  # each group's own floor


@pytest.mark.parametrize(
    "config, epochs, message",
    [
        ({"schedule": "linear"}, 3, r"'linear'.*constant, step, exponential, cosine, warmup_cosine, onecycle, cyclic"),
        ({"schedule": "cosine"}, None, "cosine schedule needs the trial's total epochs"),
        ({"schedule": "warmup_cosine", "warmup_epochs": 3}, 3, r"config\['warmup_epochs'\] is 3"),
        ({"schedule": "step", "gamma": 0}, 3, r"config\['gamma'\]"),
        ({"schedule": "step", "step_size": 1.5}, 3, r"config\['step_size'\]"),
        ({"schedule": "onecycle", "pct_start": 1.0}, 3, r"config\['pct_start'\]"),
        ({"schedule": "cyclic", "cycle_epochs": 0}, 3, r"config\['cycle_epochs'\]"),
        ({"schedule": "plateau", "plateau_patience": -1}, 3, r"config\['plateau_patience'\]"),
    ],
)
def test_bad_schedule_parameters_are_named(config, epochs, message):
    with pytest.raises(ValueError, match=message):
        build_scheduler(config, build_optimizer({}, nn.Linear(2, 2)), 4, epochs)


def test_epochs_default_to_the_configs_max_epochs():
    opt = build_optimizer({"learning_rate": LR}, nn.Linear(2, 2))
    schedule = build_scheduler({"schedule": "cosine", "max_epochs": 3}, opt, 5)
    for _ in range(2):
        opt.step()
        schedule.step_epoch()
    assert schedule.lr == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_trains_digits_and_reports_its_range(name):
    reports = run_digits({"schedule": name, "learning_rate": 0.05, "cycle_epochs": 0.5, "warmup_epochs": 1}, epochs=3)
    assert reports[-1]["val_loss"] < reports[0]["val_loss"]
    assert all(r["lr_min"] <= r["lr"] <= r["lr_max"] <= 0.05 + 1e-12 for r in reports)


@pytest.mark.parametrize("preset", ["schedules", "lr_toolkit"])
def test_presets_sample_configs_that_build(preset):
    space = load_preset(preset)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        config = space.suggest(study.ask())
        seen.add(config["schedule"])
        assert all(param.is_active(config) == (param.name in config) for param in space.params)
        build_scheduler(config, build_optimizer(config, nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))), 10, epochs=3)
    assert seen == set(SCHEDULES)
