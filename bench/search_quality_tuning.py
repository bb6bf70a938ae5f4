#!/usr/bin/env python
"""Fast tuning loop for stepsize's search defaults on the lcbench surrogate.

Runs stepsize's real components (``build_sampler``, ``OptunaStudySearcher``,
``build_trial_scheduler``) on an in-memory Optuna study, with Ray Tune's event loop replaced by
a round-robin over ``concurrency`` live trials (one epoch each per turn), calling the searcher and
the scheduler as Tune's controller does: a scheduler STOP or the last epoch ends the trial with
``done=True`` and only ``on_trial_complete``. It skips Ray's per-trial cost and SQLite, so a
6544-epoch run takes seconds; the final comparison (``bench/search_quality.py``) runs through
Ray Tune. Output: mean normalised regret at 25/50/100% of the budget per variant.

    .venv/bin/python bench/search_quality_tuning.py --tasks 167161 189905 --seeds 0 1 2 \\
        --variant base='{}' --variant g3='{"scheduler": {"name": "asha", "grace_period": 3}}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_quality as sq  # noqa: E402


class _Trial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def simulate(task: str, seed: int, space: str, overrides: dict[str, Any], budget: int, surrogate: Any,
             storage: str | None = None, max_trials: int = 10**6) -> sq.Trace:
    """One stepsize run (default concurrency 2) without Ray; returns the trace (with the
    searcher as ``trace.searcher``). ``storage``: an Optuna storage URL (default in memory);
    the run ends at ``budget`` epochs or after ``max_trials`` trials."""
    import random

    import numpy as np
    import optuna

    from orchestrator.samplers import build_sampler
    from orchestrator.schedulers import build_trial_scheduler
    from orchestrator.searcher import OptunaStudySearcher
    from ray.tune.schedulers import TrialScheduler

    overrides = dict(overrides)
    concurrency = int(overrides.pop("concurrency", 2))
    spec = sq.stepsize_spec(task, seed, space, surrogate.folder, Path("/tmp"), overrides)
    np.random.seed(seed)
    random.seed(seed)
    study = optuna.create_study(sampler=build_sampler(spec), direction=spec.objective.direction, storage=storage)
    searcher = OptunaStudySearcher(study, spec, max_new_trials=max_trials)
    scheduler = build_trial_scheduler(spec)
    trace = sq.Trace(budget)
    live: dict[str, dict[str, Any]] = {}
    count = 0
    trace.searcher = searcher  # type: ignore[attr-defined]
    while not trace.spent and (live or count < max_trials):
        while len(live) < concurrency and count < max_trials:
            trial_id = f"t{count}"
            count += 1
            config = searcher.suggest(trial_id)
            params = {k: v for k, v in config.items() if not k.startswith("_")}
            curve = surrogate.curve(task, params, first=0)
            scheduler.on_trial_add(None, _Trial(trial_id))
            live[trial_id] = {"curve": curve, "epoch": 0}
        for trial_id in list(live):
            state = live[trial_id]
            state["epoch"] += 1
            epoch = state["epoch"]
            value = float(state["curve"][epoch, 1])
            trace.add(trial_id, value)
            result = {"training_iteration": epoch, "epoch": epoch, "val_accuracy": value}
            if epoch >= spec.budget.max_epochs or trace.spent:
                decision = TrialScheduler.STOP
            else:
                decision = scheduler.on_trial_result(None, _Trial(trial_id), result)
            if decision == TrialScheduler.STOP:
                final = {**result, "done": True}
                searcher.on_trial_complete(trial_id, final)
                scheduler.on_trial_complete(None, _Trial(trial_id), final)
                del live[trial_id]
            else:
                searcher.on_trial_result(trial_id, result)
            if trace.spent:
                break
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["167161", "189905", "126026"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--space", default="lcbench_7d")
    parser.add_argument("--budget", type=int, default=sq.BUDGET)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per variant")
    args = parser.parse_args()
    surrogate = sq.load_surrogate(args.data_dir)
    variants = sq.parse_variants(args.variant) or {"default": {}}
    for name, overrides in variants.items():
        started = time.perf_counter()
        regrets: dict[float, list[float]] = {f: [] for f in sq.FRACTIONS}
        trials = []
        for task in args.tasks:
            bounds = surrogate.bound(task, "val_accuracy")
            for seed in args.seeds:
                trace = simulate(task, seed, args.space, overrides, args.budget, surrogate)
                steps = [list(s) for s in trace.steps]
                for f in sq.FRACTIONS:
                    regrets[f].append(sq.regret(sq.incumbent_at(steps, f * args.budget), bounds))
                trials.append(len(trace.trials))
        row = {"variant": name, "overrides": overrides, "space": args.space, "tasks": args.tasks, "seeds": args.seeds,
               **{f"regret@{int(f * 100)}%": statistics.fmean(v) for f, v in regrets.items()},
               "trials_mean": statistics.fmean(trials), "wall_s": round(time.perf_counter() - started, 1)}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
