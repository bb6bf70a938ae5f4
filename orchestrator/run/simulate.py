"""A study's search played in-process: the study's own searcher and scheduler, with trials whose
per-epoch results come from a function instead of Ray workers. For tests and benchmarks.

The loop does what Ray Tune's controller does with them: up to ``concurrency`` trials are live;
each turn every live trial trains one epoch; the result goes to the study's stopper (the last
epoch, the study's epoch budget) and then to the scheduler, and a STOP ends the trial with ``done=True`` through ``on_trial_complete`` only (Tune skips
``on_trial_result`` for the result that stops a trial). A result with ``diverged`` set ends its
trial as the trial runner does (reported, then repeated with ``done=True``). It skips Ray's
per-trial cost, so a 6,544-epoch lcbench search takes seconds.

    sim = simulate(spec, lambda params: (lambda epoch: {"val_loss": loss(params, epoch)}))
    sim.study.best_value, sim.epochs
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from orchestrator.keys import Config, Result

if TYPE_CHECKING:
    import optuna

    from orchestrator.run.searcher import OptunaStudySearcher
    from orchestrator.spec import StudySpec

#: ``params -> (epoch -> metrics)``: how each trial's epochs turn out.
TrialCurve = Callable[[dict[str, Any]], Callable[[int], Mapping[str, float]]]
#: ``(trial_id, epoch, metrics)``, called for every epoch trained; returning True ends the search.
EpochHook = Callable[[str, int, Mapping[str, float]], bool | None]


@dataclass
class Simulation:
    """What a simulated search did: the study it filled, its searcher, and what it trained."""

    study: "optuna.Study"
    searcher: "OptunaStudySearcher"
    scheduler: Any
    trials: int = 0
    epochs: int = 0
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> params


@dataclass(eq=False)
class SimulatedTrial:
    """A trial as schedulers and callbacks read a Ray Tune trial: its id, its configuration (with
    the Optuna trial number) and its folder; compared by identity, as Tune's trials are."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    local_path: str = ""

    def __str__(self) -> str:
        return f"trial_{self.trial_id}"


def simulate(
    spec: "StudySpec",
    trial_curve: TrialCurve,
    *,
    concurrency: int | None = None,
    max_trials: int | None = None,
    on_epoch: EpochHook | None = None,
    storage: "str | optuna.storages.BaseStorage | None" = None,
    sampler: "optuna.samplers.BaseSampler | None" = None,
    owned: bool = True,
) -> Simulation:
    """Run ``spec``'s search (its sampler, searcher and scheduler) on trials played by
    ``trial_curve``, up to ``max_trials`` trials (default ``spec.budget.trials``) or until
    ``on_epoch`` returns True. ``concurrency`` defaults to the spec's (2 when it is ``auto``).
    ``storage``: an Optuna storage (URL or object) for the study (default in memory), read through
    :class:`~orchestrator.study.owned.OwnedStudyStorage` as the driver does unless ``owned`` is
    False; ``sampler``: another
    sampler than the spec's (to compare samplers under the same searcher and scheduler). The
    global NumPy and Python generators are seeded with ``spec.seed`` (ASHA draws its brackets
    from NumPy's)."""
    import numpy as np
    import optuna
    from ray.tune.schedulers import TrialScheduler

    from orchestrator.run.schedulers import build_trial_scheduler
    from orchestrator.run.searcher import OptunaStudySearcher
    from orchestrator.run.stopping import StudyStopper
    from orchestrator.study.owned import owned_view
    from orchestrator.study.samplers import build_sampler

    concurrency = concurrency or spec.concurrency or 2
    max_trials = spec.budget.trials if max_trials is None else max_trials
    np.random.seed(spec.seed)
    random.seed(spec.seed)
    sampler = build_sampler(spec) if sampler is None else sampler
    storage = optuna.storages.get_storage(storage) if storage is not None else None
    study = optuna.create_study(sampler=sampler, direction=spec.objective.direction, storage=storage)
    if storage is not None and owned:  # as the driver reads its study during a run
        study = owned_view(study.study_name, storage, sampler)
    searcher = OptunaStudySearcher(study, spec, max_new_trials=max_trials)
    scheduler = build_trial_scheduler(spec)
    stopper = StudyStopper(searcher, spec.budget.max_epochs)
    sim = Simulation(study, searcher, scheduler)
    live: dict[str, dict[str, Any]] = {}
    done = False
    while not done and (live or sim.trials < max_trials):
        while len(live) < concurrency and sim.trials < max_trials:
            trial_id = f"t{sim.trials}"
            sim.trials += 1
            config = searcher.suggest(trial_id)
            if not isinstance(config, dict):  # the searcher has nothing more (grid exhausted)
                max_trials = sim.trials - 1
                break
            params = {k: v for k, v in config.items() if not k.startswith(Config.PRIVATE_PREFIX)}
            sim.configs[trial_id] = params
            trial = SimulatedTrial(trial_id, config)
            scheduler.on_trial_add(None, trial)
            live[trial_id] = {"trial": trial, "curve": trial_curve(params), "epoch": 0}
        for trial_id in list(live):
            state = live[trial_id]
            state["epoch"] += 1
            epoch = state["epoch"]
            metrics = dict(state["curve"](epoch))
            sim.epochs += 1
            done = bool(on_epoch(trial_id, epoch, metrics)) if on_epoch is not None else False
            result = {"training_iteration": epoch, Result.EPOCH: epoch, **metrics}
            if stopper(trial_id, result) or done:
                decision = TrialScheduler.STOP
            else:
                decision = scheduler.on_trial_result(None, state["trial"], result)
            if decision != TrialScheduler.STOP and metrics.get(Result.DIVERGED):
                # The trial runner stops a diverged trial and the workload returns: Tune passes the
                # result on, then repeats it with done=True.
                searcher.on_trial_result(trial_id, result)
                decision = TrialScheduler.STOP
            if decision == TrialScheduler.STOP:
                final = {**result, Result.DONE: True}
                searcher.on_trial_complete(trial_id, final)
                scheduler.on_trial_complete(None, state["trial"], final)
                del live[trial_id]
            else:
                searcher.on_trial_result(trial_id, result)
            if done:
                break
    searcher.end_live_trials()  # trials still live when the search ended: PRUNED, as a time limit ends them
    return sim
