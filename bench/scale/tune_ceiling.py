"""The most results a second Ray Tune itself passes through its driver on this machine.

A function trainable that reports as fast as it can (no sleep, no compute, no checkpoint), run by
a stock ``tune.Tuner`` with Ray Tune's own search (``BasicVariantGenerator``, no sampler), the FIFO
scheduler (no early stopping), ``reuse_actors=True`` and no callbacks beyond Tune's defaults
(``verbose=0``), on ``ray.init(num_cpus=CONCURRENCY)``. Whatever a searcher, a scheduler or a
tracking callback adds comes on top of this, so it bounds the results per second any tool built on
Ray Tune's controller (stepsize included) can reach here. Each case runs in a fresh process.

    nice -n 10 .venv/bin/python -m bench.scale.tune_ceiling [--cases 2:200:20,16:400:20] \\
        [--out bench/scale/results/tune_ceiling.json]

A case is CONCURRENCY:TRIALS:EPOCHS. Measured from the first result to ``fit`` returning: results
per second, and the driver process's CPU seconds per result (``/proc``, user + system).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import read_json, results_file, run_module, write_json

FIRST_RESULT = "first_result_at"


def _reporting_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    for epoch in range(1, config["epochs"] + 1):
        tune.report({"epoch": epoch, "val_loss": 1.0 / epoch})


def _driver_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def child(concurrency: int, trials: int, epochs: int, out: Path) -> None:
    """One case, in this process."""
    import ray
    from ray import tune

    started = time.perf_counter()
    ray.init(num_cpus=concurrency, include_dashboard=False, log_to_driver=False)
    marks: dict[str, float] = {}

    class FirstResult(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if FIRST_RESULT not in marks:
                marks[FIRST_RESULT] = time.perf_counter()
                marks["cpu_at_first"] = _driver_cpu_s()

    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(
            _reporting_trainable,
            param_space={"epochs": epochs, "i": tune.grid_search(list(range(trials)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=tmp, verbose=0, callbacks=[FirstResult()],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        grid = tuner.fit()
        ended = time.perf_counter()
        cpu = _driver_cpu_s() - marks["cpu_at_first"]
    results = sum(int(r.metrics.get("training_iteration", 0)) for r in grid)
    window = ended - marks[FIRST_RESULT]
    ray.shutdown()
    write_json(out, {
        "concurrency": concurrency, "trials": trials, "epochs_per_trial": epochs, "results": results,
        "start_to_first_result_s": round(marks[FIRST_RESULT] - started, 1),
        "first_result_to_end_s": round(window, 2),
        "results_per_s": round((results - 1) / window, 1),
        "driver_cpu_ms_per_result": round(1000 * cpu / max(results - 1, 1), 2),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="2:200:20,16:400:20", help="CONCURRENCY:TRIALS:EPOCHS,...")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*(int(x) for x in args.child.split(":")), out=args.child_out)
        return
    out = args.out or results_file(__file__, "tune_ceiling.json")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            part = Path(tmp) / f"{case.replace(':', '_')}.json"
            proc = run_module("bench.scale.tune_ceiling", ["--child", case, "--child-out", str(part)])
            if proc.returncode != 0:
                sys.exit(f"case {case} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
            rows.append(read_json(part))
            print(json.dumps(rows[-1]), flush=True)
    write_json(out, {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "cases": rows})


if __name__ == "__main__":
    main()
