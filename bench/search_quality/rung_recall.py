"""How many of a task's best configurations survive ASHA's rungs: on random configurations of the
lcbench surrogate, the share of the final top 10 % (by val_accuracy at epoch 51) that a rung's
top third keeps, ranked by the value at the rung (ASHA) or by a curve model's prediction of the
final value from the value and the slope up to the rung (least squares on the same
configurations: an upper bound for such a model).

    .venv/bin/python -m bench.search_quality.rung_recall --tasks 167161 189905 126026 167184
"""

from __future__ import annotations

import argparse

import numpy as np

from orchestrator.workloads.lcbench import MAX_EPOCHS, load_surrogate
from search_spaces import load_preset


def random_configs(space_name: str, count: int, seed: int) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = load_preset(space_name).distributions()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [dict(study.ask(distributions).params) for _ in range(count)]


def kept_share(scores: np.ndarray, final: np.ndarray, keep: float = 1 / 3, best: float = 0.1) -> float:
    """The share of the ``best`` fraction by ``final`` that the top ``keep`` by ``scores`` holds."""
    top = set(np.argsort(-final)[: max(1, int(best * len(final)))])
    kept = set(np.argsort(-scores)[: int(keep * len(scores))])
    return len(top & kept) / len(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["167161", "189905", "126026", "167184"])
    parser.add_argument("--rungs", nargs="+", type=int, default=[3, 9, 27])
    parser.add_argument("--configs", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", default="lcbench_7d")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    surrogate = load_surrogate(args.data_dir)
    configs = random_configs(args.space, args.configs, args.seed)
    print("| task | rung (epoch) | kept by the rung's rank | kept by a value + slope model |")
    print("|---|---|---|---|")
    for task in args.tasks:
        curves = surrogate.curves(task, configs, first=0)[:, :, 1]  # val_accuracy, row = epoch
        final = curves[:, MAX_EPOCHS]
        for rung in args.rungs:
            value, slope = curves[:, rung], curves[:, rung] - curves[:, max(1, rung // 3)]
            features = np.c_[np.ones_like(value), value, slope]
            coef, *_ = np.linalg.lstsq(features, final, rcond=None)
            print(f"| {task} | {rung} | {kept_share(value, final):.2f} | {kept_share(features @ coef, final):.2f} |")


if __name__ == "__main__":
    main()
