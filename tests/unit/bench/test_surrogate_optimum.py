"""The surrogate-optimum probe's local search reaches an optimum that lies on the space's edge."""

from __future__ import annotations

import numpy as np
from optuna.distributions import FloatDistribution, IntDistribution

from bench.search_quality.surrogate_optimum import VAL_ACCURACY, best_accuracy, local_search

SPACE = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "layers": IntDistribution(1, 5)}


class EdgeSurrogate:
    """val_accuracy rises with log(lr) and with layers, over 3 epochs: best at the top corner."""

    def curves(self, task, configs):
        out = np.zeros((len(configs), 3, VAL_ACCURACY + 1))
        for i, c in enumerate(configs):
            out[i, :, VAL_ACCURACY] = [np.log10(c["lr"]) + c["layers"] + e for e in (0.0, 0.5, 0.2)]
        return out


def test_the_best_epoch_counts_and_the_search_ends_on_the_corner():
    surrogate = EdgeSurrogate()
    assert best_accuracy(surrogate, "t", [{"lr": 1e-2, "layers": 2}]).tolist() == [-2 + 2 + 0.5]
    start = [{"lr": 1e-3, "layers": 2}, {"lr": 1e-4, "layers": 1}]
    best, accuracy = local_search(surrogate, "t", start, SPACE, np.random.default_rng(0), rounds=30, moves=50, keep=5)
    assert best == {"lr": 1e-1, "layers": 5}  # on the edge itself, not near it
    assert accuracy == -1 + 5 + 0.5
