"""Benchmark: does the LR range test's suggestion agree with a grid of full trainings, and what
does it cost?

On the built-in ``digits_cnn`` workload (``--workload digits_mlp`` for the MLP), batch size 64,
SGD with momentum 0.9:

1. the LR range test (one epoch at most) on several seeds, over two ramps: the function's
   default range (1e-7..10) and the study's LR search range extended a decade up (1e-4..10,
   as ``lr_bounds: auto`` would run it on the ``default`` preset);
2. a 12-point log grid of learning rates (1e-4..1) of full trainings, 20 epochs each, run by
   the real workload function (``orchestrator.workloads.digits.train_cnn``, through
   ``orchestrator.trial.runner.run_trial`` as a study's trial runs it) on two seeds; each
   LR's score is its best validation loss over the epochs, averaged over the seeds;
3. the best grid LR, the suggestions, their ratio (acceptance: within 3x), and the range test's
   cost as a fraction of one training epoch and of the whole grid.

Run from the repository root (about a minute on 2 CPU cores; torch uses one thread):

    .venv/bin/python -m bench.lr_range.lr_range_test            # writes bench/lr_range/results/lr_range_test.json
    .venv/bin/python -m bench.lr_range.lr_range_test --quick    # a smoke run (3 LRs, 2 epochs, 1 seed)
    .venv/bin/python -m bench.lr_range.lr_range_test --workload digits_mlp   # the same on the MLP
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import results_file, train_workload, write_json
from orchestrator.keys import Result
from orchestrator.lr_range import plot_lr_range, run_lr_range_for_workload
from orchestrator.lr_range.result import (
    json_safe,  # NaN and infinity (a diverged training) as null
)

WORKLOAD = "digits_cnn"
WORKLOADS = ("digits_cnn", "digits_mlp")
CONFIG = {"batch_size": 64, "momentum": 0.9}
ACCEPT_RATIO = 3.0
RAMPS = {
    "default_range": {"min_lr": 1e-7, "max_lr": 10.0},
    "study_range": {"min_lr": 1e-4, "max_lr": 10.0},
}


def train_once(lr: float, seed: int, epochs: int) -> dict:
    """One full training by the real workload function, run as a study's trial runs it; every
    epoch's metrics."""
    started = time.perf_counter()
    seen = train_workload(WORKLOAD, {**CONFIG, "learning_rate": lr}, epochs=epochs, seed=seed)
    wall = time.perf_counter() - started
    # the divergence guard stopped it, as it would in a study: the runner's last entry says why
    diverged = next((e.get(Result.DIVERGED_REASON) for e in seen if e.get(Result.DIVERGED)), None)
    epochs_seen = [e for e in seen if not e.get(Result.DIVERGED)]
    val = [e["val_loss"] for e in epochs_seen if math.isfinite(e.get("val_loss", math.nan))]
    return {
        "lr": lr,
        "seed": seed,
        "epochs_run": len(epochs_seen),
        "best_val_loss": min(val) if val else None,
        "final_val_loss": val[-1] if val else None,
        "best_val_accuracy": max((e["val_accuracy"] for e in epochs_seen), default=None),
        "diverged": diverged,
        "wall_s": wall,
        "train_epoch_s": sum(e.get("epoch_time_s", 0.0) for e in epochs_seen),
    }


def fastai_style(result) -> dict:
    """fastai's three suggestion functions (``minimum``, ``steep``, ``valley``) on the same recorded
    run, read the way fastai reads it: each batch's loss paired with that batch's own LR (one
    update earlier than the update it reflects), its EMA with beta 0.98, and the suggestion window
    ``[n // 10 : -5]``. For comparison with our rule only."""
    lrs = list(result.lrs)
    losses = [result.initial_loss] + [v for v in result.losses[:-1]]
    kept = [i for i, v in enumerate(losses) if math.isfinite(v)]
    lrs, losses = [lrs[i] for i in kept], [losses[i] for i in kept]
    smooth, avg = [], 0.0
    for i, v in enumerate(losses, start=1):
        avg = 0.98 * avg + 0.02 * v
        smooth.append(avg / (1 - 0.98**i))
    n = len(smooth)
    window = slice(n // 10, n - 5)
    w_lrs, w_loss = lrs[window], smooth[window]
    if len(w_loss) < 3:
        return {"minimum": None, "steep": None, "valley": None}
    minimum = w_lrs[min(range(len(w_loss)), key=w_loss.__getitem__)] / 10
    grads = [(w_loss[i + 1] - w_loss[i]) / (math.log(w_lrs[i + 1]) - math.log(w_lrs[i])) for i in range(len(w_loss) - 1)]
    steep = w_lrs[min(range(len(grads)), key=grads.__getitem__)]
    lds, max_start, max_end = [1] * len(w_loss), 0, 0
    for i in range(1, len(w_loss)):
        for j in range(i):
            if w_loss[i] < w_loss[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    valley = w_lrs[max_start + int(sections) + int(sections / 2)]
    return {"minimum": minimum, "steep": steep, "valley": valley}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=12)
    parser.add_argument("--low", type=float, default=1e-4)
    parser.add_argument("--high", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--grid-seeds", type=int, default=2)
    parser.add_argument("--range-seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timing-repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 LRs, 2 epochs, 1 seed: a smoke run")
    parser.add_argument("--workload", choices=WORKLOADS, default="digits_cnn")
    parser.add_argument("--out", default=None, help="default bench/lr_range/results/lr_range_test.json "
                        "(lr_range_test_digits_mlp.json for the MLP)")
    args = parser.parse_args()
    global WORKLOAD
    WORKLOAD = args.workload
    if args.out is None:
        name = "lr_range_test.json" if WORKLOAD == "digits_cnn" else f"lr_range_test_{WORKLOAD}.json"
        args.out = str(results_file(__file__, name))
    if args.quick:
        args.points, args.epochs, args.grid_seeds, args.range_seeds, args.timing_repeats = 3, 2, 1, 1, 2
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    # warm up (imports, data set load, first-call overheads) so no timing includes them
    run_lr_range_for_workload(WORKLOAD, CONFIG, {}, 99, num_steps=3)

    # 1. the range test
    ranges: dict[str, list[dict]] = {}
    for name, ramp in RAMPS.items():
        ranges[name] = []
        for seed in range(args.range_seeds):
            result = run_lr_range_for_workload(WORKLOAD, CONFIG, {}, seed, **ramp)
            assert result.num_steps <= 3 * result.steps_per_epoch, "the range test ran past three epochs"
            if seed == 0:
                plot_lr_range(result, out.with_name(f"{out.stem}_{name}.png"))
            ranges[name].append({
                "seed": seed,
                "suggested_lr": result.suggested_lr,
                "bounds": list(result.bounds) if result.bounds else None,
                "estimates": result.estimates,
                "min_loss_lr": result.min_loss_lr,
                "divergence_lr": result.divergence_lr,
                "confident": result.confident,
                "num_steps": result.num_steps,
                "steps_per_epoch": result.steps_per_epoch,
                "updates": len(result.lrs),
                "stop_reason": result.stop_reason,
                "elapsed_s": result.elapsed_s,
                "notes": result.notes,
                "fastai_style": fastai_style(result),
            })
            print(f"range test [{name}] seed {seed}: suggested {result.suggested_lr:.4g}, bounds "
                  f"{tuple(round(b, 5) for b in result.bounds) if result.bounds else None}, {result.num_steps}/"
                  f"{result.steps_per_epoch} batches, {result.elapsed_s:.3f} s", flush=True)

    # timing on a shared machine: the range test and one training epoch, interleaved, medians
    range_times, epoch_times = [], []
    for _ in range(args.timing_repeats):
        started = time.perf_counter()
        run_lr_range_for_workload(WORKLOAD, CONFIG, {}, 0, **RAMPS["default_range"])
        range_times.append(time.perf_counter() - started)
        epoch_times.append(train_once(0.05, 0, 1)["wall_s"])
    timing = {
        "repeats": args.timing_repeats,
        "range_test_s_median": statistics.median(range_times),
        "one_epoch_s_median": statistics.median(epoch_times),
        "note": "setup included on both sides: building the model and batches (range test), the model, "
                "one epoch of training and the validation pass (epoch)",
    }
    timing["range_test_in_epochs"] = timing["range_test_s_median"] / timing["one_epoch_s_median"]
    print(f"timing: range test {timing['range_test_s_median'] * 1000:.1f} ms, one epoch "
          f"{timing['one_epoch_s_median'] * 1000:.1f} ms (medians of {args.timing_repeats})", flush=True)

    # 2. the grid
    lrs = [float(v) for v in np.logspace(math.log10(args.low), math.log10(args.high), args.points)]
    runs = []
    grid_started = time.perf_counter()
    for lr in lrs:
        for seed in range(args.grid_seeds):
            run = train_once(lr, seed, args.epochs)
            runs.append(run)
            print(f"grid lr {lr:.4g} seed {seed}: best val_loss {run['best_val_loss']}, {run['wall_s']:.2f} s", flush=True)
    grid_wall = time.perf_counter() - grid_started
    table = []
    for lr in lrs:
        mine = [r for r in runs if r["lr"] == lr]
        scores = [r["best_val_loss"] if r["best_val_loss"] is not None else math.inf for r in mine]
        table.append({"lr": lr, "best_val_loss_per_seed": scores, "mean_best_val_loss": statistics.fmean(scores)})
    best = min(table, key=lambda row: row["mean_best_val_loss"])
    per_seed_best = {
        seed: min((r for r in runs if r["seed"] == seed), key=lambda r: r["best_val_loss"] or math.inf)["lr"]
        for seed in range(args.grid_seeds)
    }
    epochs_total = sum(r["epochs_run"] for r in runs)
    epoch_s = sum(r["wall_s"] for r in runs) / max(1, epochs_total)  # one epoch incl. validation
    train_epoch_s = sum(r["train_epoch_s"] for r in runs) / max(1, epochs_total)

    # 3. the comparison
    def summary(name: str) -> dict:
        rows = ranges[name]
        primary = rows[0]
        suggested = [r["suggested_lr"] for r in rows if r["suggested_lr"]]
        ratio = primary["suggested_lr"] / best["lr"]
        fold = lambda r: max(r, 1 / r)  # noqa: E731
        elapsed = statistics.fmean(r["elapsed_s"] for r in rows)
        return {
            "suggested_lr_seed0": primary["suggested_lr"],
            "bounds_seed0": primary["bounds"],
            "ratio_seed0": ratio,
            "within_3x_seed0": fold(ratio) <= ACCEPT_RATIO,
            "suggested_lr_per_seed": suggested,
            "suggested_lr_median": statistics.median(suggested),
            "ratio_per_seed": [s / best["lr"] for s in suggested],
            "seeds_within_3x": sum(fold(s / best["lr"]) <= ACCEPT_RATIO for s in suggested),
            "best_grid_lr_inside_bounds_seed0": bool(primary["bounds"] and primary["bounds"][0] <= best["lr"] <= primary["bounds"][1]),
            "steps": primary["num_steps"],
            "steps_per_epoch": primary["steps_per_epoch"],
            "mean_elapsed_s": elapsed,
            "fastai_style_seed0": primary["fastai_style"],
            "fastai_style_seeds_within_3x": {
                rule: sum(bool(r["fastai_style"][rule]) and fold(r["fastai_style"][rule] / best["lr"]) <= ACCEPT_RATIO for r in rows)
                for rule in ("minimum", "steep", "valley")
            },
            "fastai_style_ratios_per_seed": {
                rule: [r["fastai_style"][rule] / best["lr"] if r["fastai_style"][rule] else None for r in rows]
                for rule in ("minimum", "steep", "valley")
            },
            "cost_fraction_of_epoch_by_batches": primary["num_steps"] / primary["steps_per_epoch"],
            "cost_fraction_of_epoch_by_time": timing["range_test_in_epochs"],
            "cost_fraction_of_grid_by_time": timing["range_test_s_median"] / grid_wall,
            "cost_fraction_of_grid_by_epochs": (primary["num_steps"] / primary["steps_per_epoch"]) / epochs_total,
        }

    report = {
        "benchmark": "LR range test vs a grid of full trainings",
        "workload": WORKLOAD,
        "config": CONFIG,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.is_available(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "shared machine: other processes were using the CPUs too",
        },
        "grid": {
            "lrs": lrs,
            "epochs": args.epochs,
            "seeds": args.grid_seeds,
            "table": table,
            "best_lr": best["lr"],
            "best_mean_val_loss": best["mean_best_val_loss"],
            "best_lr_per_seed": per_seed_best,
            "wall_s": grid_wall,
            "epochs_total": epochs_total,
            "epoch_s_with_validation": epoch_s,
            "train_epoch_s": train_epoch_s,
        },
        "timing": timing,
        "range_test": {name: {"ramp": RAMPS[name], "summary": summary(name), "runs": ranges[name]} for name in RAMPS},
        "acceptance": {
            "rule": f"suggested LR (seed 0) within {ACCEPT_RATIO:g}x of the best grid LR; range test <= one epoch",
            "passed": all(summary(n)["within_3x_seed0"] and summary(n)["steps"] <= 3 * summary(n)["steps_per_epoch"] for n in RAMPS),
        },
        "quick": args.quick,
    }
    write_json(out, json_safe(report), indent=2, allow_nan=False)
    print(f"\nbest grid LR {best['lr']:.4g} (mean best val_loss {best['mean_best_val_loss']:.4f}); grid {grid_wall:.1f} s, "
          f"{epochs_total} epochs, {epoch_s * 1000:.1f} ms per epoch")
    for name in RAMPS:
        s = report["range_test"][name]["summary"]
        print(f"[{name}] suggested {s['suggested_lr_seed0']:.4g} (ratio {s['ratio_seed0']:.2f}, "
              f"{s['seeds_within_3x']}/{len(s['suggested_lr_per_seed'])} seeds within 3x), {s['steps']}/{s['steps_per_epoch']} "
              f"batches = {s['cost_fraction_of_epoch_by_time']:.2f} epochs by time, "
              f"{s['cost_fraction_of_grid_by_time']:.2%} of the grid")
    print(f"acceptance: {'passed' if report['acceptance']['passed'] else 'FAILED'}; wrote {out}")


if __name__ == "__main__":
    main()
