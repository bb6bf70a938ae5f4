"""Contract of the TPE adapter (orchestrator/_compat/optuna_tpe.py) with the installed Optuna.

It fails loudly when Optuna changes under the adapter: another release than the checked ones, a
private name gone or with other parameters, or draws that differ from stock ``TPESampler``. On
such a release stepsize runs the stock sampler instead (the fallback is tested here too).
"""

from __future__ import annotations

import inspect
import logging

import optuna
import pytest

from orchestrator._compat import optuna_tpe
from orchestrator._compat.optuna_tpe import (
    PRIVATE_NAMES,
    StudyTPESampler,
    tpe_sampler,
)

# The parameters of each private function the adapter calls or overrides, as checked.
SIGNATURES = {
    "TPESampler._sample": ["self", "study", "trial", "search_space"],
    "TPESampler._build_parzen_estimator": ["self", "study", "search_space", "trials", "handle_below"],
    "TPESampler._compute_acquisition_func": ["self", "samples", "mpe_below", "mpe_above"],
    "TPESampler._compare": ["samples", "acquisition_func_vals"],
    "TPESampler._get_internal_repr": ["self", "trials", "search_space", "study"],
    "TPESampler._get_params": ["self", "trial", "study"],
    "Study._get_trials": ["self", "deepcopy", "states", "use_cache"],
    "sampler._split_trials": ["study", "trials", "n_below"],
    "_truncnorm._log_ndtr": ["a"],
}
# The private attributes of a TPESampler the adapter reads.
ATTRIBUTES = ("_rng", "_n_ei_candidates", "_constant_liar", "_constraints_func", "_gamma", "_multivariate",
              "_n_startup_trials")


def test_every_private_name_is_there_with_the_parameters_it_was_checked_with():
    for owner, name in PRIVATE_NAMES:
        assert hasattr(owner, name), f"{owner} has no {name}"
    owners = {"TPESampler": optuna.samplers.TPESampler, "Study": optuna.Study,
              "sampler": optuna_tpe._tpe_module, "_truncnorm": optuna_tpe._truncnorm}
    for qualified, expected in SIGNATURES.items():
        owner, name = qualified.split(".", 1)
        parameters = list(inspect.signature(getattr(owners[owner], name)).parameters)
        assert parameters == expected, f"{qualified} now takes {parameters}"
    sampler = optuna.samplers.TPESampler(seed=0)
    for name in ATTRIBUTES:
        assert hasattr(sampler, name), f"TPESampler has no attribute {name}"
    assert hasattr(sampler._rng, "rng")
    # What the incremental split (tpe_split.py) reads of a study and a trial.
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    trial = study.get_trials()[0]
    assert isinstance(study._study_id, int) and isinstance(trial._trial_id, int)
    assert study._storage.get_trial(trial._trial_id).number == trial.number


def _study(sampler: optuna.samplers.BaseSampler, trials: int = 40) -> list[dict]:
    study = optuna.create_study(sampler=sampler)
    drawn = []
    for number in range(trials):
        trial = study.ask()
        params = {
            "lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
            "batch": trial.suggest_int("batch", 16, 512, log=True),
            "opt": trial.suggest_categorical("opt", ["sgd", "adam"]),
            "momentum": trial.suggest_float("momentum", 0.5, 0.99),
        }
        drawn.append(params)
        for epoch in range(1, 4):
            trial.report(params["lr"] * epoch + params["momentum"], epoch)
        if number % 3 == 0:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, params["lr"] + 0.01 * params["batch"] - params["momentum"])
    return drawn


def _stock_draws(play, kwargs: dict) -> list[dict]:
    """``play`` with stock ``TPESampler(**kwargs)`` and Optuna's own log-CDF (the adapter swaps it
    process-wide), restored afterwards."""
    optuna_tpe._truncnorm._log_ndtr = optuna_tpe._optuna_log_ndtr
    try:
        return play(optuna.samplers.TPESampler(**kwargs))
    finally:
        optuna_tpe.use_vectorized_log_ndtr()


@pytest.mark.parametrize("constant_liar", [True, False])
def test_the_adapter_draws_what_stock_tpe_draws(constant_liar):
    kwargs = dict(seed=3, n_startup_trials=5, constant_liar=constant_liar)
    ours = _study(StudyTPESampler(**kwargs))
    theirs = _stock_draws(_study, kwargs)
    for mine, stock in zip(ours, theirs):
        assert mine["opt"] == stock["opt"] and mine["batch"] == stock["batch"]
        assert mine["lr"] == pytest.approx(stock["lr"], rel=1e-9)
        assert mine["momentum"] == pytest.approx(stock["momentum"], rel=1e-9)


def _long_study(sampler: optuna.samplers.BaseSampler, trials: int = 150) -> list[dict]:
    """Maximised, with tied values, pruned trials tied on step and value, a NaN last value, a
    conditional parameter and three trials kept running at a time (what the split has to order)."""
    study = optuna.create_study(sampler=sampler, direction="maximize")
    drawn, running = [], []
    for number in range(trials):
        trial = study.ask()
        params = {"lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
                  "layers": trial.suggest_int("layers", 1, 4)}
        if params["layers"] > 2:
            params["width"] = trial.suggest_int("width", 16, 512, log=True)
        drawn.append(params)
        running.append((trial, params))
        if len(running) < 4:
            continue
        trial, params = running.pop(0)
        score = round(params["lr"] * 10 + params["layers"] / 4, 1)  # rounded: ties
        steps = 1 + number % 5
        for epoch in range(1, steps + 1):
            trial.report(float("nan") if number % 17 == 0 and epoch == steps else score * epoch, epoch)
        if steps < 5:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, score)
    return drawn


@pytest.mark.parametrize("constant_liar", [True, False])
def test_the_adapter_draws_what_stock_tpe_draws_on_a_long_maximised_study_with_ties(constant_liar):
    kwargs = dict(seed=5, n_startup_trials=10, constant_liar=constant_liar)
    ours = _long_study(StudyTPESampler(**kwargs))
    theirs = _stock_draws(_long_study, kwargs)
    assert len(ours) == len(theirs) == 150
    for mine, stock in zip(ours, theirs):
        assert mine.keys() == stock.keys()
        assert mine["layers"] == stock["layers"] and mine.get("width") == stock.get("width")
        assert mine["lr"] == pytest.approx(stock["lr"], rel=1e-9)


def test_on_an_unchecked_optuna_stepsize_uses_the_stock_sampler_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(optuna, "__version__", "99.0.0")
    monkeypatch.setattr(optuna_tpe, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=optuna_tpe.__name__):
        first = tpe_sampler(seed=0)
        second = tpe_sampler(seed=1)
    assert type(first) is optuna.samplers.TPESampler and type(second) is optuna.samplers.TPESampler
    warnings = [r for r in caplog.records if "stock TPESampler" in r.getMessage()]
    assert len(warnings) == 1 and "99.0.0" in warnings[0].getMessage()


def test_a_missing_private_name_also_falls_back(monkeypatch):
    monkeypatch.delattr(optuna.samplers.TPESampler, "_get_internal_repr")
    monkeypatch.setattr(optuna_tpe, "_warned", True)
    assert "_get_internal_repr" in optuna_tpe.adapter_problem()
    assert type(tpe_sampler(seed=0)) is optuna.samplers.TPESampler


def test_an_optuna_that_moved_the_private_modules_gets_the_stock_sampler():
    """The adapter's private imports failing must not fail the study: it reports the problem and
    the stock sampler is built (checked in a fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys, optuna, optuna.samplers._tpe as tpe\n"
        "del tpe._truncnorm\n"
        "sys.modules['optuna.samplers._tpe._truncnorm'] = None\n"
        "from orchestrator._compat import optuna_tpe\n"
        "assert 'has no optuna.samplers._tpe' in optuna_tpe.adapter_problem()\n"
        "assert type(optuna_tpe.tpe_sampler(seed=0)) is optuna.samplers.TPESampler\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
