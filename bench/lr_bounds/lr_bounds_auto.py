"""TPE + ASHA on the digits CNN: the default wide LR range against ``lr_bounds: auto``.

Both arms run the same study (same seeds, trials and epoch budget) through stepsize on a local
Ray; the auto arm first runs the LR range test (charged: its steps are reported as epochs too).
Reports, per arm and seed: best validation loss, epochs trained, and epochs until the best
validation loss so far first reaches ``--target``.

    .venv/bin/python -m bench.lr_bounds.lr_bounds_auto --seeds 0 1 2 --trials 30 \\
        --out bench/lr_bounds/results/lr_bounds_auto.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import results_file, temp_study, write_json

WIDE = {"type": "float", "low": 1.0e-4, "high": 10.0, "log": True}


def run_arm(auto: bool, seed: int, trials: int, max_epochs: int, folder: Path, target: float) -> dict:
    from orchestrator.api import launch
    from orchestrator.keys import StudyAttr, TrialAttr
    from orchestrator.study.storage import load_study

    name = f"{'auto' if auto else 'wide'}-{seed}"
    spec = temp_study(
        name, folder, workload="digits_cnn", seed=seed,
        search_space={"learning_rate": WIDE, "batch_size": 64, "momentum": 0.9},
        sampler="tpe", scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3},
        budget={"trials": trials, "max_epochs": max_epochs}, concurrency=2,
        lr_bounds="auto" if auto else "declared",
    )
    started = time.perf_counter()
    launch(spec, quiet=True)
    wall = time.perf_counter() - started
    study, _ = load_study(name, spec.storage)
    finished = sorted((t for t in study.trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    range_test = study.user_attrs.get(StudyAttr.LR_RANGE)
    charged = (range_test["result"]["num_steps"] / range_test["result"]["steps_per_epoch"]) if range_test else 0.0
    epochs, best, to_target = charged, float("inf"), None
    for trial in finished:
        epochs += len(trial.intermediate_values)
        values = [v for v in trial.intermediate_values.values()]
        best = min([best, *values])
        if to_target is None and best <= target:
            to_target = epochs
    return {
        "arm": "auto" if auto else "wide", "seed": seed, "best_val_loss": best, "epochs": epochs,
        "epochs_to_target": to_target, "wall_s": wall, "range_test_epochs": charged,
        "lr_range": None if not range_test else range_test["chosen"],
        "diverged": sum(1 for t in study.trials if t.user_attrs.get(TrialAttr.DIVERGED)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--target", type=float, default=0.06, help="validation loss to reach")
    parser.add_argument("--out", default=str(results_file(__file__, "lr_bounds_auto.json")))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for auto in (False, True):
                rows.append(run_arm(auto, seed, args.trials, args.max_epochs, Path(tmp), args.target))
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for arm in ("wide", "auto"):
        mine = [r for r in rows if r["arm"] == arm]
        reached = [r["epochs_to_target"] for r in mine if r["epochs_to_target"] is not None]
        summary[arm] = {
            "mean_best_val_loss": statistics.mean(r["best_val_loss"] for r in mine),
            "mean_epochs": statistics.mean(r["epochs"] for r in mine),
            "reached_target": f"{len(reached)}/{len(mine)}",
            "median_epochs_to_target": statistics.median(reached) if reached else None,
            "mean_diverged": statistics.mean(r["diverged"] for r in mine),
        }
    print("| arm | mean best val_loss | mean epochs | reached target | median epochs to target | mean diverged trials |")
    print("|---|---|---|---|---|---|")
    for arm, s in summary.items():
        print(f"| {arm} | {s['mean_best_val_loss']:.4f} | {s['mean_epochs']:.0f} | {s['reached_target']} | {s['median_epochs_to_target']} | {s['mean_diverged']:.1f} |")
    write_json(args.out, {"settings": vars(args), "runs": rows, "summary": summary})


if __name__ == "__main__":
    main()
