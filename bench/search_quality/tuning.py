"""Fast tuning loop for stepsize's search defaults on the lcbench surrogate.

Replays stepsize's real search (``build_sampler``, ``OptunaStudySearcher``,
``build_trial_scheduler``) in-process with ``orchestrator.run.simulate``: an in-memory Optuna
study, Ray Tune's event loop replaced by a round-robin over ``concurrency`` live trials (one epoch
each per turn), the searcher and the scheduler called as Tune's controller calls them. The epoch
budget ends the search (``simulate``'s ``on_epoch``). It skips Ray's per-trial cost and SQLite, so
a 6544-epoch run takes seconds; the final comparison (``bench.search_quality.search_quality``)
runs through Ray Tune. Output: mean normalised regret at 25/50/100% of the budget per variant.

    .venv/bin/python -m bench.search_quality.tuning --tasks 167161 189905 --seeds 0 1 2 \\
        --variant base='{}' --variant g3='{"scheduler": {"name": "asha", "grace_period": 3}}'

A variant's overrides are top-level spec fields (``concurrency`` included, default 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BUDGET,
    FRACTIONS,
    Trace,
    incumbent_at,
    lcbench_spec,
    regret,
    replay,
)
from bench.search_quality.search_quality import parse_variants
from orchestrator.workloads.lcbench import Surrogate, load_surrogate


def run(task: str, seed: int, space: str, overrides: dict[str, Any], budget: int, surrogate: Surrogate) -> Trace:
    """One stepsize run on ``task`` with ``seed`` and the spec ``overrides``, replayed in-process
    until ``budget`` epochs are trained."""
    trace = Trace(budget)
    with tempfile.TemporaryDirectory() as tmp:
        replay(lcbench_spec(task, seed, space, surrogate.folder, Path(tmp), overrides), surrogate, trace)
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["167161", "189905", "126026"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--space", default="lcbench_7d")
    parser.add_argument("--budget", type=int, default=BUDGET)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per variant")
    parser.add_argument("--per-run", action="store_true", help="also print each run's final regret and trials")
    args = parser.parse_args()
    surrogate = load_surrogate(args.data_dir)
    variants = parse_variants(args.variant) or {"default": {}}
    for name, overrides in variants.items():
        started = time.perf_counter()
        regrets: dict[float, list[float]] = {f: [] for f in FRACTIONS}
        trials = []
        for task in args.tasks:
            bounds = surrogate.bound(task, "val_accuracy")
            for seed in args.seeds:
                trace = run(task, seed, args.space, overrides, args.budget, surrogate)
                for f in FRACTIONS:
                    regrets[f].append(regret(incumbent_at(trace.steps, f * args.budget), bounds))
                trials.append(len(trace.trials))
                if args.per_run:
                    print(json.dumps({"variant": name, "task": task, "seed": seed, "regret@100%": regrets[1.0][-1],
                                      "trials": trials[-1], "epochs": trace.epochs, "steps": trace.steps}), flush=True)
        row = {"variant": name, "overrides": overrides, "space": args.space, "tasks": args.tasks, "seeds": args.seeds,
               **{f"regret@{int(f * 100)}%": statistics.fmean(v) for f, v in regrets.items()},
               "trials_mean": statistics.fmean(trials), "wall_s": round(time.perf_counter() - started, 1)}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
