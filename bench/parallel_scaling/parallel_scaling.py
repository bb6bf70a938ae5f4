"""How fast the digits CNN trains on this machine with 1 or 2 trainings at once, no orchestrator.

The floor for any 2-slot orchestrator: two single-thread trainings at once (what stepsize and
Ray Tune run with concurrency 2 and 1 CPU per trial) against one training alone with 1 thread
and with torch's default threads (what plain Optuna runs). Each training is the built-in
``digits_cnn`` workload (``orchestrator.workloads.digits.train_cnn``, run by
``orchestrator.trial.runner.run_trial`` as a trial runs it, divergence guard off) for ``--epochs``
epochs at a fixed configuration. The setups are run interleaved ``--repeat`` times (single runs on
this VM vary by 20% or more); the median over repeats of each run's median epoch time is printed
and written as JSON, with every repeat's value.

    .venv/bin/python -m bench.parallel_scaling.parallel_scaling [--epochs 15] [--repeat 5] \\
        [--out bench/parallel_scaling/results/parallel_scaling.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

from bench.common import results_file, train_workload, write_json

BATCH_SIZES = (16, 64, 256)


def train_child(threads: int, batch_size: int, epochs: int, start_at: float, queue: "mp.Queue") -> None:
    import torch

    from orchestrator.workloads.digits import load_digits_split

    threads = threads or torch.get_num_threads()  # 0: torch's default
    load_digits_split(0)
    while time.time() < start_at:  # start together
        time.sleep(0.005)
    seen = train_workload("digits_cnn", {"learning_rate": 0.01, "batch_size": batch_size, "momentum": 0.9},
                          epochs=epochs, seed=0, threads=threads, divergence_factor=None)
    queue.put([m["epoch_time_s"] for m in seen][1:])  # the first epoch warms up


def measure(processes: int, threads: int, batch_size: int, epochs: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0
    procs = [ctx.Process(target=train_child, args=(threads, batch_size, epochs, start_at, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    times = [t for _ in procs for t in queue.get()]
    for p in procs:
        p.join()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(results_file(__file__, "parallel_scaling.json")))
    args = parser.parse_args()
    setups = {
        "1 process, 1 thread": (1, 1),
        "1 process, default threads": (1, 0),
        "2 processes, 1 thread each": (2, 1),
    }
    runs: dict[str, dict[str, list[float]]] = {name: {str(bs): [] for bs in BATCH_SIZES} for name in setups}
    for _ in range(args.repeat):
        for bs in BATCH_SIZES:
            for name, (procs, threads) in setups.items():
                runs[name][str(bs)].append(measure(procs, threads, bs, args.epochs))
    results = {name: {bs: statistics.median(v) for bs, v in row.items()} for name, row in runs.items()}
    print("| setup | " + " | ".join(f"batch {bs}: median epoch s" for bs in BATCH_SIZES)
          + " | epochs per s, all processes (batch 16 / 64 / 256) |")
    print("|---|" + "---|" * (len(BATCH_SIZES) + 1))
    for name, (procs, _) in setups.items():
        row = results[name]
        rates = " / ".join(f"{procs / row[str(bs)]:.1f}" for bs in BATCH_SIZES)
        print(f"| {name} | " + " | ".join(f"{row[str(bs)]:.3f}" for bs in BATCH_SIZES) + f" | {rates} |")
    write_json(args.out, {"cores": os.cpu_count(), "epochs": args.epochs, "repeat": args.repeat,
                          "median_epoch_s": results, "runs": runs})


if __name__ == "__main__":
    main()
