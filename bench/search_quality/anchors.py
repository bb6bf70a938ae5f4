"""Anchor methods for the search-quality benchmark: published multi-fidelity optimisers run on the
same lcbench tasks, space and epoch budget as stepsize's search, so it can be placed among them.

- ``smac_mf``: SMAC3's ``MultiFidelityFacade`` (random forest with Hyperband);
- ``smac_hb``: SMAC3's ``HyperbandFacade`` (random configurations with Hyperband);
- ``syne_bohb``: Syne Tune's ``BOHB`` (KDE searcher with ASHA, stopping type);
- ``syne_asha``: Syne Tune's ``ASHA`` (random configurations), for reference;
- ``dehb``: DEHB (differential evolution with Hyperband).

Budgets are epochs. SMAC3 and DEHB get ``min_budget`` 1 and ``max_budget`` 51 with eta 3, so
their rungs are 51/27, 51/9, 51/3 and 51 epochs, trained as 2, 6, 17 and 51 (rounded); they run
one evaluation at a time through their ask/tell interfaces, and every evaluation trains from
scratch (neither resumes a configuration), so a promotion pays all its epochs again. Both minimise
``100 - val_accuracy`` (the error in percent) at the evaluation's last epoch. Syne Tune's schedulers
(``max_t`` 51, grace period 1, reduction factor 3, maximising ``val_accuracy`` per ``epoch``) are
driven in-process as its ``Tuner`` drives them, with two live trials playing one epoch each in turn
(stepsize's concurrency on this machine). Every epoch trained is charged and counts for the
incumbent (:class:`~bench.search_quality.charging.EpochLedger`). The libraries are imported only
when a method runs; they are not stepsize dependencies (``pip install -e '.[bench-anchors]'``
into a venv of their own).
"""

from __future__ import annotations

import datetime
import itertools
import logging
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from bench.common import Trace
from bench.search_quality.charging import EpochLedger
from orchestrator.workloads.lcbench import MAX_EPOCHS, Surrogate

if TYPE_CHECKING:
    from search_spaces.space import SearchSpace

METRIC = "val_accuracy"
MIN_BUDGET = 1  # epochs; with eta 3 and 51 epochs the lowest rung is 51/27, trained as 2 epochs
ETA = 3
CONCURRENCY = 2  # live Syne Tune trials

#: ``(surrogate, task, seed, space, budget) -> Trace``, as the benchmark's other methods.
AnchorMethod = Callable[[Surrogate, str, int, "SearchSpace", int], Trace]


# -- the space in each library's terms ---------------------------------------------------------
def library_space(space: "SearchSpace", library: str, seed: int = 0) -> Any:
    """``space``'s sampled parameters for ``library``: a ConfigSpace ``ConfigurationSpace`` seeded
    with ``seed`` (``"configspace"``: SMAC3, DEHB) or a Syne Tune config-space dict
    (``"syne_tune"``), with the same bounds, log scales and integer types. Fixed values stay out
    (:func:`to_params` adds them); conditional and stepped parameters are refused."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if space.is_conditional:
        raise ValueError("the anchors take unconditional spaces only")
    if library == "configspace":
        from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

        def real(name: str, d: Any) -> Any:
            return Float(name, (d.low, d.high), log=d.log)

        def whole(name: str, d: Any) -> Any:
            return Integer(name, (d.low, d.high), log=d.log)

        def pick(name: str, d: Any) -> Any:
            return Categorical(name, list(d.choices))
    elif library == "syne_tune":
        from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

        def real(name: str, d: Any) -> Any:
            return (loguniform if d.log else uniform)(d.low, d.high)

        def whole(name: str, d: Any) -> Any:
            return (lograndint if d.log else randint)(d.low, d.high)

        def pick(name: str, d: Any) -> Any:
            return choice(list(d.choices))
    else:
        raise ValueError(f"library {library!r}: 'configspace' or 'syne_tune'")
    params: dict[str, Any] = {}
    for name, dist in space.distributions().items():
        if isinstance(dist, FloatDistribution) and dist.step is None:
            params[name] = real(name, dist)
        elif isinstance(dist, IntDistribution) and dist.step == 1:
            params[name] = whole(name, dist)
        elif isinstance(dist, CategoricalDistribution):
            params[name] = pick(name, dist)
        else:
            raise ValueError(f"{name}: {dist} has no counterpart here (a stepped range)")
    if library == "syne_tune":
        return params
    configspace = ConfigurationSpace(seed=seed)
    configspace.add(list(params.values()))
    return configspace


def to_params(config: Mapping[str, Any], space: "SearchSpace") -> dict[str, Any]:
    """A library's configuration as the surrogate takes it: Python ints and floats, fixed values added."""
    from optuna.distributions import FloatDistribution, IntDistribution

    params = dict(space.fixed_values())
    for name, dist in space.distributions().items():
        value = config[name]
        if isinstance(dist, IntDistribution):
            value = int(value)
        elif isinstance(dist, FloatDistribution):
            value = float(value)
        params[name] = value
    return params


def clip_to_space(config: Mapping[str, Any], space: "SearchSpace") -> dict[str, Any]:
    """``config`` with numbers outside ``space``'s ranges moved to the nearest bound. Syne Tune
    0.16's KDE searcher (BOHB) maps an integer range ``[low, high]`` onto ``[1, high]`` when it
    samples from its model, so it proposes batch sizes below 16 and units below 64, which the
    surrogate cannot evaluate."""
    clipped = dict(config)
    for name, dist in space.distributions().items():
        if hasattr(dist, "low") and name in clipped:
            clipped[name] = min(max(clipped[name], dist.low), dist.high)
    return clipped


def _ledger(surrogate: Surrogate, task: str, budget: int) -> EpochLedger:
    return EpochLedger(Trace(budget), lambda config: surrogate.curve(task, config, first=0)[:, 1])


# -- SMAC3 -------------------------------------------------------------------------------------
def _not_called(config: Any, seed: int = 0, budget: float = 0.0) -> float:
    raise RuntimeError("the benchmark evaluates SMAC's trials itself (ask/tell)")


def _smac(facade: str) -> AnchorMethod:
    def run(surrogate: Surrogate, task: str, seed: int, space: "SearchSpace", budget: int) -> Trace:
        """SMAC3 through ask/tell: each trial trains its budget's epochs from scratch."""
        from smac import HyperbandFacade, MultiFidelityFacade, Scenario
        from smac.runhistory.dataclasses import TrialValue

        ledger = _ledger(surrogate, task, budget)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scenario = Scenario(library_space(space, "configspace", seed), deterministic=True, n_trials=budget,
                                min_budget=MIN_BUDGET, max_budget=MAX_EPOCHS, seed=seed, output_directory=Path(tmp))
            cls = MultiFidelityFacade if facade == "mf" else HyperbandFacade
            smac = cls(scenario, _not_called, intensifier=cls.get_intensifier(scenario, eta=ETA), overwrite=True,
                       logging_level=logging.ERROR)
            for number in itertools.count():  # n_trials >= the budget: the epochs end the run
                info = smac.ask()
                value = ledger.train(number, to_params(info.config, space), round(info.budget))
                if value is None:
                    break
                smac.tell(info, TrialValue(cost=100.0 - value))
        return ledger.trace

    return run


# -- DEHB --------------------------------------------------------------------------------------
def run_dehb(surrogate: Surrogate, task: str, seed: int, space: "SearchSpace", budget: int) -> Trace:
    """DEHB through ask/tell, one worker: each job trains its fidelity's epochs from scratch."""
    from dehb import DEHB

    ledger = _ledger(surrogate, task, budget)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dehb = DEHB(cs=library_space(space, "configspace", seed), min_fidelity=MIN_BUDGET, max_fidelity=MAX_EPOCHS,
                    eta=ETA, n_workers=1, seed=seed, output_path=tmp, save_freq="end", log_level="WARNING")
        for number in itertools.count():
            job = dehb.ask()
            epochs = round(job["fidelity"])
            value = ledger.train(number, to_params(job["config"], space), epochs)
            if value is None:
                break
            dehb.tell(job, {"fitness": 100.0 - value, "cost": float(epochs)})
    return ledger.trace


# -- Syne Tune ---------------------------------------------------------------------------------
def play_round_robin(scheduler: Any, ledger: EpochLedger, space: "SearchSpace", concurrency: int) -> None:
    """Drive a Syne Tune scheduler as its ``Tuner`` does until the ledger's budget is spent:
    ``concurrency`` live trials train one epoch each in turn; every result goes to
    ``on_trial_result``; a STOP or PAUSE takes the trial out (``on_trial_remove``); a paused trial
    resumes from the epoch it reached when ``suggest`` says so (paying only the new epochs); a
    trial that ends at the last epoch without a STOP is completed (``on_trial_complete``). A new
    trial's configuration is clipped to the space (:func:`clip_to_space`)."""
    from syne_tune.backend.trial_status import Trial
    from syne_tune.optimizer.scheduler import SchedulerDecision

    live: dict[int, Any] = {}
    paused: dict[int, Any] = {}
    started = 0
    while not ledger.trace.spent:
        while len(live) < concurrency:
            suggestion = scheduler.suggest()
            if suggestion is None:
                break
            if not suggestion.spawn_new_trial_id:
                trial = paused.pop(suggestion.checkpoint_trial_id)
            elif suggestion.checkpoint_trial_id is not None:
                raise NotImplementedError("a new trial from another trial's checkpoint")
            else:
                config = clip_to_space(suggestion.config, space)  # the trial carries what is trained
                trial = Trial(trial_id=started, config=config, creation_time=datetime.datetime.now())
                started += 1
                scheduler.on_trial_add(trial)
            live[trial.trial_id] = trial
        if not live:
            return
        for trial_id, trial in list(live.items()):
            epoch = ledger.reached.get(trial_id, 0) + 1
            value = ledger.train(trial_id, to_params(trial.config, space), epoch, resume=True)
            if value is None:
                return
            result = {"epoch": epoch, METRIC: value}
            decision = scheduler.on_trial_result(trial, result)
            if decision in (SchedulerDecision.STOP, SchedulerDecision.PAUSE):
                scheduler.on_trial_remove(trial)
                del live[trial_id]
                if decision == SchedulerDecision.PAUSE:
                    paused[trial_id] = trial
            elif epoch >= MAX_EPOCHS:
                scheduler.on_trial_complete(trial, result)
                del live[trial_id]


def _syne(name: str) -> AnchorMethod:
    def run(surrogate: Surrogate, task: str, seed: int, space: "SearchSpace", budget: int) -> Trace:
        """A Syne Tune scheduler with its defaults, two trials live."""
        import numpy as np
        from syne_tune.optimizer.baselines import ASHA, BOHB

        np.random.seed(seed)  # ASHA draws a new trial's bracket from NumPy's global generator
        ledger = _ledger(surrogate, task, budget)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("syne_tune").setLevel(logging.ERROR)
            scheduler = (BOHB if name == "bohb" else ASHA)(
                library_space(space, "syne_tune"), metric=METRIC, time_attr="epoch", max_t=MAX_EPOCHS,
                do_minimize=False, random_seed=seed)
            play_round_robin(scheduler, ledger, space, CONCURRENCY)
        return ledger.trace

    return run


ANCHORS: dict[str, AnchorMethod] = {
    "smac_mf": _smac("mf"),
    "smac_hb": _smac("hb"),
    "syne_bohb": _syne("bohb"),
    "syne_asha": _syne("asha"),
    "dehb": run_dehb,
}
