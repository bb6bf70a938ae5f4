"""Cost of recording trials in MLflow: stepsize's batched callback vs Ray's MLflowLoggerCallback.

Method (results in docs/mlflow.md):

- Both callbacks are driven directly, in one process, with the same synthetic Tune-like trials and
  results: ``--trials`` trials x ``--epochs`` epochs, each result holding ``--metrics`` workload
  metrics plus Tune's ``training_iteration`` (the step of Ray's callback); stepsize's also get the
  trial's ``epoch``, which every stepsize trial reports and its callback takes as the step. Trials run ``--concurrency`` at a time,
  their results interleaved round-robin, as Tune delivers them from concurrent trials.
- Each callback writes to its own fresh SQLite tracking store (``sqlite:///...``) in a temporary
  folder; the store's tables are created before the clock starts.
- stepsize: ``StudyRecorder`` with its default flushing (a writer thread; every 5 s, every 200
  results and at each trial's end), clocked from the first event until ``close()`` has written
  everything. Also reported: the time spent inside the callback's hooks, i.e. what Tune's event
  loop waits for.
- Ray: ``ray.air.integrations.mlflow.MLflowLoggerCallback`` (``setup()`` first), clocked from the
  first event to the last ``on_trial_complete``; it writes synchronously inside its hooks (one
  ``log_metric`` call per metric and result, plus a ``get_run`` per result), so both times are
  the same for it. It also logs ``training_iteration`` as a metric, since it logs every numeric
  key of the result.
- Both stores are then counted (metric points, runs) to check that everything arrived.

Run from the repository root: ``.venv/bin/python -m bench.mlflow_logging.mlflow_logging``
(1,000 x 50 x 5; the Ray side takes tens of minutes on 2 cores) or ``--trials 50`` for a quick run;
``--json FILE`` also writes the results (e.g. to ``bench/mlflow_logging/results/``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine_info, write_json
from orchestrator.keys import Result
from orchestrator.run.simulate import SimulatedTrial

METRICS = ("train_loss", "val_loss", "val_accuracy", "lr", "epoch_time_s", "grad_norm", "weight_norm", "throughput")


def events(trials: int, epochs: int, metrics: int, concurrency: int, epoch_key: bool = False):
    """("start" | "result" | "end", trial, result) in the order Tune would deliver them; with
    ``epoch_key`` each result also holds the trial's ``epoch``, as a stepsize trial reports it."""
    names = METRICS[:metrics]
    pending = [SimulatedTrial(f"{n:05d}", {"learning_rate": 10 ** (-4 + 3 * n / max(1, trials)), "batch_size": 32,
                                       "momentum": 0.9, "_trial_number": n}) for n in range(trials)]
    pending.reverse()
    running: list[tuple[SimulatedTrial, int]] = []
    while pending or running:
        while pending and len(running) < concurrency:
            trial = pending.pop()
            running.append((trial, 0))
            yield "start", trial, None
        still = []
        for trial, done in running:
            epoch = done + 1
            result = {name: 1.0 / (epoch + i) for i, name in enumerate(names)}
            result["training_iteration"] = epoch
            if epoch_key:
                result[Result.EPOCH] = epoch
            yield "result", trial, result
            if epoch == epochs:
                yield "end", trial, None
            else:
                still.append((trial, epoch))
        running = still


def _prepare(uri: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments()  # creates the tables


def count(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return {
            "runs": con.execute("select count(*) from runs").fetchone()[0],
            "metric_points": con.execute("select count(*) from metrics").fetchone()[0],
        }


def drive(callback: Any, args: argparse.Namespace, epoch_key: bool = False) -> float:
    """Send the events to ``callback``'s hooks; the seconds spent inside them."""
    in_hooks = 0.0
    for kind, trial, result in events(args.trials, args.epochs, args.metrics, args.concurrency, epoch_key):
        t0 = time.perf_counter()
        if kind == "start":
            callback.on_trial_start(iteration=0, trials=[], trial=trial)
        elif kind == "result":
            callback.on_trial_result(iteration=0, trials=[], trial=trial, result=result)
        else:
            callback.on_trial_complete(iteration=0, trials=[], trial=trial)
        in_hooks += time.perf_counter() - t0
    return in_hooks


def run_stepsize(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from orchestrator.tracking import StudyRecorder, TrialStatus

    db = folder / "stepsize.db"
    uri = f"sqlite:///{db}"
    _prepare(uri)
    recorder = StudyRecorder(
        tracking_uri=uri, study_name="bench-stepsize", study_key="b" * 32, log_folder=folder / "log",
        status_of=lambda number: TrialStatus("COMPLETE", "completed"), objective="val_loss",
    ).start()
    started = time.perf_counter()
    in_hooks = drive(recorder.callback, args, epoch_key=True)  # stepsize's callback steps by the trial's epoch
    written = recorder.close()
    total = time.perf_counter() - started
    assert written, "stepsize recorder did not write everything"
    return {"total_s": total, "in_hooks_s": in_hooks, "batches": recorder.writer.stats["batches"],
            "flushes": recorder.flusher.flushes, **count(db)}


def run_ray(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    db = folder / "ray.db"
    uri = f"sqlite:///{db}"
    _prepare(uri)
    callback = MLflowLoggerCallback(tracking_uri=uri, experiment_name="bench-ray")
    callback.setup()
    started = time.perf_counter()
    drive(callback, args)
    total = time.perf_counter() - started
    return {"total_s": total, "in_hooks_s": total, **count(db)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--metrics", type=int, default=5, choices=range(1, len(METRICS) + 1))
    parser.add_argument("--concurrency", type=int, default=8, help="trials whose results interleave")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--only", choices=("stepsize", "ray"), help="run one side only (no ratio)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow  # noqa: F401 - configures its loggers, which are then quietened

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        folder = Path(tmp)
        if args.only != "ray":
            ours = run_stepsize(folder, args)
            print(f"stepsize: {ours['total_s']:.1f} s ({ours['in_hooks_s']:.2f} s in the hooks), "
                  f"{ours['metric_points']} points, {ours['runs']} runs, {ours['batches']} batches", flush=True)
        if args.only != "stepsize":
            ray = run_ray(folder, args)
            print(f"ray:      {ray['total_s']:.1f} s, {ray['metric_points']} points, {ray['runs']} runs", flush=True)
        if args.only:
            return 0

    expected = args.trials * args.epochs * args.metrics
    summary = {
        "trials": args.trials, "epochs": args.epochs, "metrics": args.metrics, "concurrency": args.concurrency,
        "expected_points": expected, "stepsize": ours, "ray": ray,
        "speedup_total": ray["total_s"] / ours["total_s"],
        "speedup_hooks": ray["in_hooks_s"] / ours["in_hooks_s"],
        "machine": machine_info(),
    }
    print()
    print("| callback | wall time until all written | time inside the hooks | metric points | runs |")
    print("|---|---|---|---|---|")
    print(f"| stepsize (batched) | {ours['total_s']:.1f} s | {ours['in_hooks_s']:.2f} s | {ours['metric_points']} | {ours['runs']} |")
    print(f"| Ray MLflowLoggerCallback | {ray['total_s']:.1f} s | {ray['in_hooks_s']:.1f} s | {ray['metric_points']} | {ray['runs']} |")
    print(f"\nspeed-up: {summary['speedup_total']:.1f}x (wall), {summary['speedup_hooks']:.0f}x (time in the hooks)")
    if ours["metric_points"] < expected:
        print(f"stepsize wrote {ours['metric_points']} points, expected {expected}", file=sys.stderr)
        return 1
    if args.json:
        write_json(args.json, summary, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
