#!/usr/bin/env python
"""Scale: one large stepsize study on the lcbench workload, run with ``launch`` as users run it.

Default spec (TPE, ASHA, SQLite storage, concurrency auto) on the 7-D lcbench space with
``--trials`` trials (2,000 by default) of up to 51 epochs. Measures the driver's time per suggest
(``SearchProgress.suggest_seconds``: ask, sample, record; p50 / p95 / max, and p95 over the last
500 suggests), result throughput (epochs reported per second of the run), the driver's peak RSS
(sampled every 0.5 s and ``ru_maxrss``) and the run's wall time. MLflow recording is off
(``STEPSIZE_TRACKING=off``) unless ``--tracking`` is given.

    nice -n 10 .venv/bin/python bench/lcbench_scale.py [--trials 2000] [--task 189873] \\
        [--out bench/results/lcbench_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.samples: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            rss = _rss_mib()
            self.samples.append(rss)
            self.peak = max(self.peak, rss)

    def stop(self) -> None:
        self._halt.set()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--max-epochs", type=int, default=51)
    parser.add_argument("--task", default="189873")
    parser.add_argument("--space", default="lcbench_7d")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tracking", action="store_true", help="keep MLflow recording on")
    parser.add_argument("--time-limit", default=None, help="the spec's budget.time_limit, e.g. 30m")
    parser.add_argument("--driver-only", action="store_true",
                        help="no Ray: the real searcher, scheduler and SQLite storage with trials played in-process")
    parser.add_argument("--storage", choices=("sqlite", "sqlite-wal", "memory"), default="sqlite",
                        help="--driver-only: SQLite as stepsize makes it, SQLite with WAL and synchronous=NORMAL, or in memory")
    parser.add_argument("--tpe-cost", action="store_true",
                        help="CPU and wall time of one suggest on a synthetic study of --trials trials, in memory")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    suffix = "" if args.storage == "sqlite" else f"_{args.storage.replace('-', '_')}"
    default_name = f"lcbench_scale_driver{suffix}.json" if args.driver_only else "lcbench_scale.json"
    default_name = "lcbench_scale_tpe_cost.json" if args.tpe_cost else default_name
    args.out = args.out or ROOT / "bench" / "results" / default_name
    if args.tpe_cost:
        tpe_cost(args)
        return
    if args.driver_only:
        driver_only(args)
        return
    if not args.tracking:
        os.environ["STEPSIZE_TRACKING"] = "off"

    import orchestrator.searcher as searcher_module
    from orchestrator.runner import launch
    from orchestrator.spec import spec_from_mapping
    from orchestrator.workloads.lcbench import data_dir

    captured: list = []
    base = searcher_module.OptunaStudySearcher

    class Recorded(base):  # type: ignore[misc, valid-type]
        """The real searcher, kept so its progress can be read after the run."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            captured.append(self)

    searcher_module.OptunaStudySearcher = Recorded
    sampler = _RssSampler()
    with tempfile.TemporaryDirectory() as tmp:
        spec = spec_from_mapping({
            "name": "lcbench-scale",
            "workload": "lcbench",
            "workload_options": {"task": args.task, "data_dir": str(data_dir(args.data_dir))},
            "search_space": args.space,
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "budget": {"trials": args.trials, "max_epochs": args.max_epochs, "time_limit": args.time_limit},
            "storage": f"sqlite:///{tmp}/optuna.db",
            "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
            "results_dir": f"{tmp}/ray",
        })
        rss_before = _rss_mib()
        sampler.start()
        started = time.perf_counter()
        summary = launch(spec, quiet=True)
        wall = time.perf_counter() - started
        sampler.stop()
        import optuna

        study = optuna.load_study(study_name=spec.name, storage=spec.storage)
        epochs = sum(int(t.user_attrs.get("epochs", 0)) for t in study.trials)
    progress = captured[-1].progress
    suggest_ms = [1000 * s for s in progress.suggest_seconds]
    training_s = time.monotonic() - progress.first_result_at if progress.first_result_at else wall
    result = {
        "trials": summary.total,
        "states": summary.counts,
        "best_val_accuracy": summary.best_value,
        "task": args.task,
        "max_epochs": args.max_epochs,
        "space": args.space,
        "sampler": spec.sampler.name,
        "sampler_options": spec.sampler.options,
        "scheduler": spec.scheduler.name,
        "scheduler_options": spec.scheduler.options,
        "concurrency": spec.concurrency or "auto",
        "wall_s": round(wall, 1),
        "epochs_reported": epochs,
        "results_per_s": round(epochs / wall, 1),
        "trials_per_s": round(summary.total / wall, 2),
        "suggest_ms_p50": round(_percentile(suggest_ms, 0.5), 2),
        "suggest_ms_p95": round(_percentile(suggest_ms, 0.95), 2),
        "suggest_ms_max": round(max(suggest_ms), 2),
        "suggest_ms_p95_last_500": round(_percentile(suggest_ms[-500:], 0.95), 2),
        "suggest_ms_mean_by_500": [round(statistics.fmean(suggest_ms[i:i + 500]), 2) for i in range(0, len(suggest_ms), 500)],
        "driver_rss_mib_before": round(rss_before, 1),
        "driver_rss_mib_peak": round(max(sampler.peak, _rss_mib()), 1),
        "driver_ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tracking": "on" if args.tracking else "off",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "first_result_to_end_s": round(training_s, 1),
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


def tpe_cost(args: argparse.Namespace) -> None:
    """The sampler's own cost: ``--trials`` synthetic trials (random configurations; 60% stopped at
    epoch 3, 20% at 9, 10% at 27, 10% complete at 51) in memory, then 30 suggests timed, for
    independent and multivariate TPE, with the preset's int parameters and with all floats, each
    with Optuna's ``TPESampler`` (and its own log-CDF) and with stepsize's ``StudyTPESampler``,
    side by side in this one run."""
    import random

    import optuna
    from optuna.samplers._tpe import _truncnorm
    from optuna.trial import TrialState

    from orchestrator import tpe
    from orchestrator.samplers import build_sampler
    from orchestrator.spec import spec_from_mapping
    from search_spaces import preset_mapping

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ints = preset_mapping(args.space)
    floats = {("bs" if k == "batch_size" else k): {**v, "type": "float"} for k, v in ints.items()}
    rows = []
    for label, space_map in (("preset (int batch_size, num_layers, max_units)", ints), ("all float", floats)):
        for multivariate in (False, True):
            for implementation in ("optuna TPESampler", "stepsize StudyTPESampler"):
                spec = spec_from_mapping({"name": "cost", "search_space": space_map, "budget": {"max_epochs": 51},
                                          "objective": {"metric": "val_accuracy", "mode": "max"},
                                          "sampler": {"name": "tpe", "multivariate": multivariate}})
                rng = random.Random(0)
                study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
                for _ in range(args.trials):
                    trial = study.ask()
                    spec.search_space.suggest(trial)
                    epochs = rng.choice([3] * 6 + [9] * 2 + [27, 51])
                    for epoch in range(1, epochs + 1):
                        trial.report(rng.random() * 100, epoch)
                    done = epochs == 51
                    study.tell(trial, rng.random() * 100 if done else None, state=TrialState.COMPLETE if done else TrialState.PRUNED)
                if implementation.startswith("optuna"):
                    _truncnorm._log_ndtr = tpe._optuna_log_ndtr  # Optuna as shipped
                    study.sampler = optuna.samplers.TPESampler(
                        seed=spec.seed, multivariate=multivariate, constant_liar=True,
                        n_startup_trials=spec.sampler.options["n_startup_trials"])
                else:
                    study.sampler = build_sampler(spec)  # installs the vectorized log-CDF
                walls, cpus = [], []
                for _ in range(30):
                    wall, cpu = time.perf_counter(), time.process_time()
                    trial = study.ask()
                    spec.search_space.suggest(trial)
                    walls.append(1000 * (time.perf_counter() - wall))
                    cpus.append(1000 * (time.process_time() - cpu))
                    study.tell(trial, None, state=TrialState.PRUNED)
                tpe.use_vectorized_log_ndtr()
                rows.append({"space": label, "multivariate": multivariate, "sampler": implementation, "trials": args.trials,
                             "cpu_ms_p50": round(_percentile(cpus, 0.5), 1), "cpu_ms_p95": round(_percentile(cpus, 0.95), 1),
                             "wall_ms_p50": round(_percentile(walls, 0.5), 1), "wall_ms_p95": round(_percentile(walls, 0.95), 1)})
                print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


def _storage(kind: str, folder: str):
    """None (in memory), stepsize's SQLite storage, or the same with WAL and synchronous=NORMAL."""
    if kind == "memory":
        return None
    from orchestrator.study import make_storage

    storage = make_storage(f"sqlite:///{folder}/optuna.db")
    if kind == "sqlite-wal":
        from sqlalchemy import event

        engine = storage.engine

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record) -> None:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")

        engine.dispose()
    return storage


def driver_only(args: argparse.Namespace) -> None:
    """The driver's share at scale: stepsize's searcher (TPE on SQLite) and ASHA over ``--trials``
    trials whose epochs are played in-process (two at a time, as with concurrency 2)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from search_quality_tuning import simulate

    from orchestrator.workloads.lcbench import load_surrogate

    surrogate = load_surrogate(args.data_dir)
    sampler = _RssSampler()
    with tempfile.TemporaryDirectory(dir=str(ROOT / "bench")) as tmp:  # on disk, as the default storage
        rss_before = _rss_mib()
        sampler.start()
        started = time.perf_counter()
        trace = simulate(args.task, 0, args.space, {"budget": {"trials": args.trials, "max_epochs": args.max_epochs}},
                         10**12, surrogate, storage=_storage(args.storage, tmp), max_trials=args.trials)
        wall = time.perf_counter() - started
        sampler.stop()
    suggest_ms = [1000 * s for s in trace.searcher.progress.suggest_seconds]
    result = {
        "mode": "driver only (no Ray): real searcher, sampler and ASHA",
        "storage": args.storage,
        "trials": len(trace.trials), "epochs_reported": trace.epochs, "task": args.task, "space": args.space,
        "max_epochs": args.max_epochs, "wall_s": round(wall, 1), "results_per_s": round(trace.epochs / wall, 1),
        "suggest_ms_p50": round(_percentile(suggest_ms, 0.5), 2),
        "suggest_ms_p95": round(_percentile(suggest_ms, 0.95), 2),
        "suggest_ms_max": round(max(suggest_ms), 2),
        "suggest_ms_p95_last_500": round(_percentile(suggest_ms[-500:], 0.95), 2),
        "suggest_ms_mean_by_500": [round(statistics.fmean(suggest_ms[i:i + 500]), 2) for i in range(0, len(suggest_ms), 500)],
        "driver_rss_mib_before": round(rss_before, 1),
        "driver_rss_mib_peak": round(max(sampler.peak, _rss_mib()), 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
