"""The search-quality benchmark charges a method for every epoch it trains: a restart from scratch
pays again, a resumed trial pays only its new epochs, and the budget ends a training mid-way."""

from __future__ import annotations

from bench.common import Trace
from bench.search_quality.charging import EpochLedger


def curve(config):
    """A made-up learning curve: epoch e scores ``config["x"] + e`` (index 0 before training)."""
    return [config["x"] + epoch for epoch in range(52)]


def test_from_scratch_pays_every_epoch_again():
    ledger = EpochLedger(Trace(100), curve)
    assert ledger.train("a", {"x": 0.5}, 2) == 2.5
    assert ledger.train("a", {"x": 0.5}, 6) == 6.5  # a promotion evaluated from scratch: 6 more
    assert ledger.trace.epochs == 8
    # the restart repeats 1.5 and 2.5 (charged, no new incumbent), then improves from epoch 3 on
    assert ledger.trace.steps == [(1, 1.5), (2, 2.5), (5, 3.5), (6, 4.5), (7, 5.5), (8, 6.5)]


def test_resumed_trial_pays_only_new_epochs():
    ledger = EpochLedger(Trace(100), curve)
    for epoch in (1, 2, 3):
        assert ledger.train(7, {"x": 0.0}, epoch, resume=True) == float(epoch)
    assert ledger.train(7, {"x": 0.0}, 9, resume=True) == 9.0
    assert ledger.trace.epochs == 9 and ledger.reached[7] == 9
    assert ledger.trace.trials == {7}


def test_budget_ends_a_training_mid_way():
    ledger = EpochLedger(Trace(5), curve)
    assert ledger.train("a", {"x": 0.0}, 3) == 3.0
    assert ledger.train("b", {"x": 10.0}, 4) is None  # two of its four epochs fit the budget
    assert ledger.trace.spent and ledger.trace.epochs == 5 and ledger.reached["b"] == 2
    assert ledger.trace.best == 12.0  # the epochs trained before the budget ran out still count
    assert ledger.train("c", {"x": 99.0}, 1) is None and ledger.trace.best == 12.0
