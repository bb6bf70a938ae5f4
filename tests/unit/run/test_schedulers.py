"""stepsize's ASHA / HyperBand and median rule decide exactly as Ray Tune's own schedulers do, and
a scheduler rebuilt from recorded curves decides as one that saw those trials live."""

from __future__ import annotations

import random

import numpy as np
import pytest
from ray.tune.schedulers import (
    AsyncHyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)

from orchestrator.keys import Config
from orchestrator.run.schedulers._median_stopping import MedianStopping
from orchestrator.run.schedulers._successive_halving import (
    AsyncSuccessiveHalving,
    hyperband_brackets,
)


class FakeTrial:
    """What a scheduler reads of a Tune trial."""

    def __init__(self, number: int, status: str = "RUNNING"):
        self.trial_id = f"ray-{number}"
        self.config = {Config.TRIAL_NUMBER: number, "learning_rate": 0.1}
        self.status = status


class FakeController:
    """The part of Tune's controller the median rule asks: the live trials."""

    def __init__(self, live: list[FakeTrial]):
        self.live = live

    def get_live_trials(self) -> list[FakeTrial]:
        return self.live


def _events(rng: random.Random, trials: int, max_t: int, concurrency: int) -> list[tuple[str, int, int, float]]:
    """A random schedule of ("add", n), ("result", n, epoch, value) events, trials in waves of
    ``concurrency``; the values are noisy learning curves, some NaN."""
    events = []
    for start in range(0, trials, concurrency):
        wave = list(range(start, min(trials, start + concurrency)))
        levels = {n: rng.uniform(0.1, 3.0) for n in wave}
        for n in wave:
            events.append(("add", n, 0, 0.0))
        for epoch in range(1, max_t + 1):
            for n in wave:
                value = levels[n] / epoch + rng.gauss(0, 0.05)
                if rng.random() < 0.02:
                    value = float("nan")
                events.append(("result", n, epoch, value))
    return events


def _play(scheduler, events, metric: str, mode: str, controller=None) -> list[tuple[int, int, str]]:
    """Feed ``events`` to ``scheduler`` as Tune does: a STOP or the last epoch ends the trial
    through on_trial_complete; a stopped trial reports nothing more."""
    trials: dict[int, FakeTrial] = {}
    ended: set[int] = set()
    decisions = []
    for kind, number, epoch, value in events:
        if kind == "add":
            trials[number] = FakeTrial(number)
            scheduler.on_trial_add(controller, trials[number])
            continue
        if number in ended:
            continue
        result = {"epoch": epoch, "training_iteration": epoch, metric: value}
        action = scheduler.on_trial_result(controller, trials[number], result)
        decisions.append((number, epoch, action))
        if action == TrialScheduler.STOP:
            ended.add(number)
            scheduler.on_trial_complete(controller, trials[number], result)
    return decisions


ASHA_CASES = [
    # max_t, grace_period, reduction_factor, brackets, mode
    (20, 3, 3, 1, "min"),
    (20, 1, 2, 1, "max"),
    (51, 3, 3, 1, "max"),
    (27, 1, 3, hyperband_brackets(27, 3), "min"),
    (12, 2, 4, 2, "max"),
]


@pytest.mark.parametrize("max_t,grace,rf,brackets,mode", ASHA_CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asha_decides_as_ray_tunes_async_hyperband(max_t, grace, rf, brackets, mode, seed):
    events = _events(random.Random(seed), trials=30, max_t=max_t, concurrency=4)
    np.random.seed(seed)  # both draw a trial's bracket from NumPy's global generator
    theirs = _play(AsyncHyperBandScheduler(time_attr="epoch", metric="loss", mode=mode, max_t=max_t,
                                           grace_period=grace, reduction_factor=rf, brackets=brackets),
                   events, "loss", mode)
    np.random.seed(seed)
    ours = _play(AsyncSuccessiveHalving(metric="loss", mode=mode, max_t=max_t, grace_period=grace,
                                        reduction_factor=rf, brackets=brackets), events, "loss", mode)
    assert ours == theirs
    stops = [d for d in ours if d[2] == TrialScheduler.STOP]
    assert any(epoch < max_t for _, epoch, _ in stops), "the case must stop some trials early to compare anything"


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_rule_decides_as_ray_tunes_median_stopping_rule(mode, seed):
    events = _events(random.Random(seed), trials=24, max_t=12, concurrency=3)
    waiting = FakeController([FakeTrial(99, status="PENDING")])
    theirs = _play(MedianStoppingRule(time_attr="epoch", metric="loss", mode=mode, grace_period=3,
                                      min_samples_required=3), events, "loss", mode, waiting)
    ours = _play(MedianStopping(metric="loss", mode=mode, grace_period=3, min_samples_required=3),
                 events, "loss", mode, waiting)
    assert ours == theirs
    actions = {action for _, _, action in ours}
    assert TrialScheduler.STOP in actions and TrialScheduler.PAUSE in actions


def test_asha_rebuilt_from_recorded_curves_decides_as_one_that_saw_them():
    """A resumed study: the first trials' curves are seeded; the next trials meet the same rungs."""
    events = _events(random.Random(7), trials=16, max_t=20, concurrency=4)
    first = [e for e in events if e[1] < 8]
    rest = [e for e in events if e[1] >= 8]
    live = AsyncSuccessiveHalving(metric="loss", mode="min", max_t=20, grace_period=3, reduction_factor=3)
    played = _play(live, first, "loss", "min")
    stopped_at = {}
    for number, epoch, action in played:
        if action == TrialScheduler.STOP:
            stopped_at[number] = epoch
    curves = {n: {epoch: value for kind, m, epoch, value in first
                  if kind == "result" and m == n and epoch <= stopped_at.get(n, 20)} for n in range(8)}
    rebuilt = AsyncSuccessiveHalving(metric="loss", mode="min", max_t=20, grace_period=3, reduction_factor=3)
    rebuilt.seed(curves)
    assert _play(rebuilt, rest, "loss", "min") == _play(live, rest, "loss", "min")


def test_median_rule_rebuilt_from_recorded_curves_keeps_a_resumed_trials_history():
    rule = MedianStopping(metric="loss", mode="min", grace_period=1, min_samples_required=1)
    rule.seed({0: {1: 1.0, 2: 0.9}, 1: {1: 0.2, 2: 0.1, 3: 0.1}})
    resumed = FakeTrial(0)
    rule.on_trial_add(None, resumed)
    # Trial 0 continues its own curve: its best so far (0.9) is worse than trial 1's running mean.
    assert rule.on_trial_result(None, resumed, {"epoch": 3, "loss": 0.95}) == TrialScheduler.STOP
    assert [r["epoch"] for r in rule.results["optuna-0"]] == [1, 2, 3]


def test_a_scheduler_refuses_search_properties_that_contradict_its_objective():
    asha = AsyncSuccessiveHalving(metric="loss", mode="min", max_t=9, grace_period=1, reduction_factor=3)
    assert asha.metric == "loss"
    assert asha.set_search_properties(None, None) and asha.set_search_properties("loss", "min")
    assert not asha.set_search_properties("accuracy", None)
    assert not asha.set_search_properties(None, "max")


@pytest.mark.parametrize("seed", range(8))
def test_the_next_trial_to_run_is_the_one_ray_tunes_fifo_scheduler_picks(seed):
    """Trials added over time whose statuses change as in Tune (pending, running, paused, ended,
    an errored trial retried as pending): stepsize's scheduler picks what FIFOScheduler picks at
    every step, while looking at the trials not ended only."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    from orchestrator.run.schedulers._base import ObjectiveScheduler

    class Controller:
        def __init__(self) -> None:
            self.trials: list[FakeTrial] = []

        def get_trials(self) -> list[FakeTrial]:
            return self.trials

    rng = random.Random(seed)
    controller, ours, stock = Controller(), ObjectiveScheduler("val_loss", "min"), FIFOScheduler()
    statuses = [Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR]
    for step in range(600):
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            controller.trials.append(FakeTrial(len(controller.trials), Trial.PENDING))
        live = [t for t in controller.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]
        for trial in rng.sample(live, min(len(live), 2)):
            trial.status = rng.choice(statuses)
        running = [t for t in controller.trials if t.status == Trial.RUNNING]
        for failed in rng.sample(running, min(len(running), rng.choice([0, 0, 0, 1, 2]))):
            # a failed trial Tune retries: PENDING, moved to the end
            ours.on_trial_error(controller, failed)
            stock.on_trial_error(controller, failed)
            failed.status = Trial.PENDING
            controller.trials.remove(failed)
            controller.trials.append(failed)
        choice = ours.choose_trial_to_run(controller)
        assert choice is stock.choose_trial_to_run(controller), f"step {step}"
    assert len(controller.trials) > 100
    assert len(ours._waiting) < len(controller.trials) / 2  # ended trials are no longer looked at
