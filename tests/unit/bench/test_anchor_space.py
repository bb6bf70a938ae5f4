"""The anchors' search spaces match stepsize's (bounds, log scale, integer type), and a Syne Tune
scheduler driven round robin pays a resumed trial only its new epochs and trains (and shows) a
proposal clipped to the space. Needs the anchors' libraries (the ``bench-anchors`` extra); skipped
without them."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import IntDistribution

from bench.common import Trace
from bench.search_quality.charging import EpochLedger
from search_spaces import load_preset

ConfigSpace = pytest.importorskip("ConfigSpace")
syne_config_space = pytest.importorskip("syne_tune.config_space")

from bench.search_quality.anchors import library_space, play_round_robin, to_params  # noqa: E402

SPACE = load_preset("lcbench_7d")


def test_configspace_matches_the_preset():
    translated = library_space(SPACE, "configspace", seed=3)
    assert sorted(translated) == sorted(SPACE.distributions())
    for name, dist in SPACE.distributions().items():
        hp = translated[name]
        assert (hp.lower, hp.upper, hp.log) == (dist.low, dist.high, dist.log), name
        expected = ConfigSpace.UniformIntegerHyperparameter if isinstance(dist, IntDistribution) \
            else ConfigSpace.UniformFloatHyperparameter
        assert isinstance(hp, expected), name
    for config in translated.sample_configuration(200):
        params = to_params(config, SPACE)
        for name, dist in SPACE.distributions().items():
            assert type(params[name]) is (int if isinstance(dist, IntDistribution) else float), name
            assert dist.low <= params[name] <= dist.high, (name, params[name])


def test_syne_tune_space_matches_the_preset():
    translated = library_space(SPACE, "syne_tune")
    assert sorted(translated) == sorted(SPACE.distributions())
    for name, dist in SPACE.distributions().items():
        domain = translated[name]
        assert (domain.lower, domain.upper) == (dist.low, dist.high), name
        assert isinstance(domain, syne_config_space.Integer if isinstance(dist, IntDistribution)
                          else syne_config_space.Float), name
        assert syne_config_space.is_log_space(domain) == dist.log, name
    params = to_params({"batch_size": np.int64(16), "learning_rate": np.float32(0.01), "momentum": 0.5,
                        "weight_decay": 0.0, "num_layers": np.int64(2), "max_units": 64, "max_dropout": 0.1}, SPACE)
    assert type(params["batch_size"]) is int and type(params["learning_rate"]) is float


def test_round_robin_resumes_paused_trials_and_clips_proposals():
    from syne_tune.optimizer.scheduler import SchedulerDecision, TrialScheduler, TrialSuggestion

    class PauseAtThree(TrialScheduler):
        """Starts two trials, pauses each at epoch 3, then resumes trial 0 to the end."""

        def __init__(self):
            super().__init__(random_seed=0)
            self.started = 0
            self.removed = []
            self.batch_sizes = set()

        def suggest(self):
            if self.started < 2:
                self.started += 1
                return TrialSuggestion.start_suggestion(  # batch size 5: below the range, as BOHB can
                    {"learning_rate": 0.01 * self.started, "batch_size": 5, "momentum": 0.9})
            if self.removed == [0, 1]:
                self.removed.append("resumed")
                return TrialSuggestion.resume_suggestion(0)
            return None

        def on_trial_result(self, trial, result):
            self.batch_sizes.add(trial.config["batch_size"])
            if result["epoch"] == 3:
                return SchedulerDecision.PAUSE
            return SchedulerDecision.STOP if result["epoch"] >= 51 else SchedulerDecision.CONTINUE

        def on_trial_remove(self, trial):
            self.removed.append(trial.trial_id)

    space = load_preset("lcbench_3d")
    ledger = EpochLedger(Trace(1000), lambda config: [config["learning_rate"] * e for e in range(52)])
    scheduler = PauseAtThree()
    play_round_robin(scheduler, ledger, space, concurrency=2)
    assert ledger.reached == {0: 51, 1: 3}
    assert ledger.trace.epochs == 51 + 3  # trial 0's first three epochs are not paid twice
    assert scheduler.batch_sizes == {16}  # clipped to the range, and the scheduler sees what was trained
