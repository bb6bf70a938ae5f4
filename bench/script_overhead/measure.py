"""What the script path costs against the function path, on the digits MLP workload.

Both arms run the same training loop (``bench/script_overhead/digits_script.py`` wraps the
built-in ``digits_mlp``) through the trial runner a Ray worker uses (``run_trial``), without Ray,
alternating arm by arm in one invocation. The function arm runs in this process, as a reused Ray
worker does (its first trial pays the imports and the data set, later trials do not); the script
arm starts a fresh Python for every trial. Reported per arm: trial start-up (from the trial's start
to its first report, less that epoch's own compute) and per-epoch overhead (the interval between
reports less the epoch's compute, ``epoch_time_s``).

    .venv/bin/python -m bench.script_overhead.measure [--trials 5] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.common import ROOT, machine_info, results_file, write_json


def _runtime(workload, epochs: int):
    from orchestrator.trial.runner import TrialRuntime

    return TrialRuntime(workload=workload, max_epochs=epochs, seed=0, cpus=1, gpu=0)


def _one_trial(runtime, number: int) -> dict[str, float]:
    from orchestrator.keys import Config

    marks: list[tuple[float, dict]] = []
    began = time.perf_counter()

    def sink(metrics: dict, folder: str | None = None) -> None:
        marks.append((time.perf_counter(), dict(metrics)))

    config = {"learning_rate": 0.05, "batch_size": 64, "momentum": 0.9, Config.TRIAL_NUMBER: number}
    from orchestrator.trial.runner import run_trial

    run_trial(config, runtime, sink, checkpointing=True)
    assert marks and "trial_failed" not in marks[-1][1], marks[-1][1]
    compute = [m["epoch_time_s"] for _, m in marks]
    intervals = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    return {
        "startup_s": marks[0][0] - began - compute[0],
        "epoch_overhead_ms": 1000 * statistics.median(i - c for i, c in zip(intervals, compute[1:])),
        "epoch_compute_ms": 1000 * statistics.median(compute),
        "script_import_s": marks[0][1].get("import_s", float("nan")),
        "wall_s": time.perf_counter() - began,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    from orchestrator.workloads.script import ScriptWorkload

    script = ScriptWorkload(script=str(ROOT / "bench" / "script_overhead" / "digits_script.py"), pass_flags=False,
                            cwd=str(ROOT))
    arms = {"function": _runtime("digits_mlp", args.epochs), "script": _runtime(script, args.epochs)}
    rows: dict[str, list[dict]] = {name: [] for name in arms}
    for number in range(args.trials):
        for name, runtime in arms.items():
            rows[name].append(_one_trial(runtime, number))
            print(name, number, {k: round(v, 4) for k, v in rows[name][-1].items()}, file=sys.stderr, flush=True)
    summary = {}
    for name, trials in rows.items():
        warm = trials[1:] if name == "function" else trials
        summary[name] = {
            "first_startup_s": trials[0]["startup_s"],
            "startup_s_median": statistics.median(t["startup_s"] for t in warm),
            "epoch_overhead_ms_median": statistics.median(t["epoch_overhead_ms"] for t in trials),
            "epoch_compute_ms_median": statistics.median(t["epoch_compute_ms"] for t in trials),
        }
    summary["script"]["script_import_s_median"] = statistics.median(t["script_import_s"] for t in rows["script"])
    summary["ratio_startup_script_vs_warm_function"] = (summary["script"]["startup_s_median"]
                                                        / max(summary["function"]["startup_s_median"], 1e-9))
    out = write_json(results_file(__file__, "script_overhead.json"),
                     {"machine": machine_info(), "trials": args.trials, "epochs": args.epochs, "summary": summary,
                      "rows": rows})
    for name in arms:
        print(name, {k: round(v, 4) for k, v in summary[name].items()})
    print("written to", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
