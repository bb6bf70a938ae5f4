"""Where the lcbench surrogate's optimum lies, per task: the best normalised regret of random
configurations, and of a local search from the best of them (local moves as
``orchestrator.study.samplers.local_moves`` makes them: normal steps in units of each range,
clipped to it), with the configuration it ends on and which of its parameters sit on an edge of
the space. A regret below 0 is the surrogate predicting above the task's recorded maximum.

    .venv/bin/python -m bench.search_quality.surrogate_optimum --tasks 167161 189905 126026 167184
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import regret
from bench.search_quality.rung_recall import random_configs
from orchestrator.study.samplers.local_moves import perturb, to_unit
from orchestrator.workloads.lcbench import OUTPUTS, Surrogate, load_surrogate
from search_spaces import load_preset

VAL_ACCURACY = OUTPUTS.index("val_accuracy")
KEEP = 20  # the local search starts from, and keeps, this many best configurations


def best_accuracy(surrogate: Surrogate, task: str, configs: list[dict[str, Any]], chunk: int = 2000) -> np.ndarray:
    """Each configuration's best val_accuracy over its 51 epochs (the incumbent the benchmark
    charges for)."""
    return np.concatenate([surrogate.curves(task, configs[i:i + chunk])[:, :, VAL_ACCURACY].max(axis=1)
                           for i in range(0, len(configs), chunk)])


def local_search(surrogate: Surrogate, task: str, start: list[dict[str, Any]], distributions: dict[str, Any],
                 rng: np.random.Generator, rounds: int, moves: int, keep: int) -> tuple[dict[str, Any], float]:
    """Rounds of ``moves`` local moves from the ``keep`` best configurations so far (scale 0.1,
    then 0.03 for the last 60 %); the best configuration and its accuracy."""
    pool = list(start)
    scores = best_accuracy(surrogate, task, pool)
    for r in range(rounds):
        scale = 0.1 if r < 0.4 * rounds else 0.03
        order = np.argsort(-scores)[:keep]
        parents = [pool[i] for i in order]
        children = [perturb(parents[i % len(parents)], distributions, rng, scale) for i in range(moves)]
        pool = parents + children
        scores = np.concatenate([scores[order], best_accuracy(surrogate, task, children)])
    best = int(np.argmax(scores))
    return pool[best], float(scores[best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["167161", "189905", "126026", "167184"])
    parser.add_argument("--configs", type=int, default=10000, help="random configurations per task")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--moves", type=int, default=2000, help="local moves per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", default="lcbench_7d")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    surrogate = load_surrogate(args.data_dir)
    distributions = load_preset(args.space).distributions()
    configs = random_configs(args.space, args.configs, args.seed)
    rng = np.random.default_rng(args.seed)
    rows = []
    print("| task | best random regret | local-search regret | parameters on an edge |")
    print("|---|---|---|---|")
    for task in args.tasks:
        bounds = surrogate.bound(task, "val_accuracy")
        scores = best_accuracy(surrogate, task, configs)
        start = [configs[i] for i in np.argsort(-scores)[:KEEP]]
        best, accuracy = local_search(surrogate, task, start, distributions, rng, args.rounds, args.moves, keep=KEEP)
        units = {name: to_unit(value, distributions[name]) for name, value in best.items()}
        edges = sorted(f"{name} {'low' if unit == 0.0 else 'high'}" for name, unit in units.items() if unit in (0.0, 1.0))
        row = {"task": task, "random_regret": regret(float(scores.max()), bounds),
               "local_search_regret": regret(accuracy, bounds), "config": best, "on_edge": edges}
        rows.append(row)
        print(f"| {task} | {row['random_regret']:.4f} | {row['local_search_regret']:.4f} | {', '.join(edges) or '-'} |",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
