"""Scale: one large stepsize study on the lcbench workload, run on Ray Tune as ``launch`` runs it.

Default spec (TPE, ASHA, SQLite storage, concurrency auto) on the 7-D lcbench space with
``--trials`` trials (2,000 by default) of up to 51 epochs. Measures the driver's time per suggest
(``SearchProgress.suggest_seconds``: ask, sample, record; p50 / p95 / max, and p95 over the last
500 suggests), result throughput (epochs reported per second of the run), the driver's peak RSS
(sampled every 0.5 s and ``ru_maxrss``) and the run's wall time. MLflow recording is off
(``STEPSIZE_TRACKING=off``) unless ``--tracking`` is given.

The study runs through ``orchestrator.run.launch.launch``, as ``stepsize launch`` runs it; its
``RunOutcome`` hands back the searcher's ``SearchProgress`` (the suggest times).

    nice -n 10 .venv/bin/python -m bench.scale.lcbench_scale [--trials 2000] [--task 189873] \\
        [--out bench/scale/results/lcbench_scale.json]

Two more modes:

- ``--driver-only``: no Ray; the real searcher, sampler and ASHA with the trials played
  in-process (``orchestrator.run.simulate``), on SQLite or in memory (``--storage``); writes
  ``lcbench_scale_driver[_STORAGE].json``. With ``--stock-tpe`` the sampler is Optuna's stock
  ``TPESampler`` with the spec's TPE options instead of the one stepsize builds (run it as its own
  process: stepsize's TPE swaps a function inside Optuna for the whole process); writes
  ``lcbench_scale_driver[_STORAGE]_stock_tpe.json``. The two side by side answer whether stock
  TPE meets the suggest-latency target. ``--concurrency N`` keeps N trials live (default 2);
  ``--plain-storage`` reads the study from the storage at every call instead of through the
  driver's in-memory view (``orchestrator.study.owned``), for the side-by-side comparison.
- ``--tpe-cost``: the sampler's own cost on a synthetic in-memory study of ``--trials`` trials,
  Optuna's stock ``TPESampler`` against the sampler stepsize builds (``build_sampler``), each in
  its own process (stepsize's TPE swaps a function inside Optuna for the whole process), the
  latter with ``history: null`` and with the default ``history: 1000``; writes
  ``lcbench_scale_tpe_cost.json``.

Ray Tune's own ceiling (results a second with a trainable that only reports) is
``bench/scale/tune_ceiling.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    RssSampler,
    Trace,
    lcbench_spec,
    percentile,
    read_json,
    replay,
    results_file,
    rss_mib,
    run_module,
    suggest_ms,
    write_json,
)
from orchestrator.keys import Env, TrialAttr

SPACES = ("preset (int batch_size, num_layers, max_units)", "all float")
ARMS = {"optuna": "optuna TPESampler", "stepsize_all": "stepsize StudyTPESampler, history: null (every trial)",
        "stepsize": "stepsize StudyTPESampler, history: 1000 (the default)"}


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
    parser.add_argument("--stock-tpe", action="store_true", dest="stock_tpe",
                        help="--driver-only: Optuna's stock TPESampler (the spec's options) instead of stepsize's")
    parser.add_argument("--storage", choices=("sqlite", "sqlite-wal", "memory"), default="sqlite",
                        help="--driver-only: SQLite as stepsize makes it (WAL, synchronous=NORMAL); the same with "
                             "those pragmas set once more by the benchmark, as its earlier sqlite-wal runs did; or in memory")
    parser.add_argument("--concurrency", type=int, default=None, help="--driver-only: trials live at once (default 2)")
    parser.add_argument("--plain-storage", action="store_true", dest="plain_storage",
                        help="--driver-only: every read from the storage, not the driver's in-memory view of its study")
    parser.add_argument("--tpe-cost", action="store_true",
                        help="CPU and wall time of one suggest on a synthetic study of --trials trials, in memory")
    parser.add_argument("--tpe-arm", choices=sorted(ARMS), help=argparse.SUPPRESS)  # one --tpe-cost arm, in a child
    parser.add_argument("--no-rung-model", action="store_true", dest="no_rung_model",
                        help="--driver-only: TPE alone (sampler.rung_model: false), for a side-by-side run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    suffix = "" if args.storage == "sqlite" else f"_{args.storage.replace('-', '_')}"
    suffix += "_stock_tpe" if args.stock_tpe else ""
    suffix += f"_c{args.concurrency}" if args.concurrency else ""
    suffix += "_plain" if args.plain_storage else ""
    suffix += "_no_rung_model" if args.no_rung_model else ""
    default_name = f"lcbench_scale_driver{suffix}.json" if args.driver_only else "lcbench_scale.json"
    default_name = "lcbench_scale_tpe_cost.json" if args.tpe_cost else default_name
    args.out = args.out or results_file(__file__, default_name)
    if args.tpe_arm:
        write_json(args.out, tpe_cost_rows(args, args.tpe_arm))
    elif args.tpe_cost:
        tpe_cost(args)
    elif args.driver_only:
        driver_only(args)
    else:
        full(args)


def full(args: argparse.Namespace) -> None:
    """The whole study on Ray Tune."""
    if not args.tracking:
        os.environ[Env.TRACKING] = "off"
    from orchestrator.run.launch import Console, launch
    from orchestrator.study.storage import load_study
    from orchestrator.workloads.lcbench import data_dir

    sampler = RssSampler()
    with tempfile.TemporaryDirectory() as tmp:
        spec = lcbench_spec(args.task, 0, args.space, data_dir(args.data_dir), Path(tmp), {
            "name": "lcbench-scale",
            "budget": {"trials": args.trials, "max_epochs": args.max_epochs, "time_limit": args.time_limit},
        })
        rss_before = rss_mib()
        sampler.start()
        started = time.perf_counter()
        outcome = launch(spec, Console(quiet=True))
        wall = time.perf_counter() - started
        peak = sampler.stop()
        epochs = sum(int(t.user_attrs.get(TrialAttr.EPOCHS, 0)) for t in load_study(spec.name, spec.storage)[0].trials)
    progress, summary = outcome.progress, outcome.summary
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
        **suggest_ms(progress.suggest_seconds),
        "driver_rss_mib_before": round(rss_before, 1),
        "driver_rss_mib_peak": round(peak, 1),
        "driver_ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tracking": "on" if args.tracking else "off",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "first_result_to_end_s": round(training_s, 1),
    }
    print(json.dumps(result, indent=1))
    write_json(args.out, result)


def tpe_cost(args: argparse.Namespace) -> None:
    """The sampler's own cost: ``--trials`` synthetic trials (random configurations; 60% stopped at
    epoch 3, 20% at 9, 10% at 27, 10% complete at 51) in memory, then 30 suggests timed, for
    independent and multivariate TPE, with the preset's int parameters and with all floats, each
    with Optuna's stock ``TPESampler`` and with the sampler stepsize builds; one process per
    sampler, the same synthetic studies in both."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for arm in ARMS:
            out = Path(tmp) / f"{arm}.json"
            command = ["--tpe-arm", arm, "--trials", str(args.trials), "--space", args.space, "--out", str(out)]
            proc = run_module("bench.scale.lcbench_scale", command)
            if proc.returncode != 0:
                raise SystemExit(f"--tpe-cost arm {arm} failed:\n{proc.stdout}{proc.stderr}")
            rows += read_json(out)
    order = {(label, multivariate, sampler): i for i, (label, multivariate, sampler) in enumerate(
        (label, multivariate, sampler) for label in SPACES for multivariate in (False, True) for sampler in ARMS.values())}
    rows.sort(key=lambda row: order[(row["space"], row["multivariate"], row["sampler"])])
    for row in rows:
        print(json.dumps(row), flush=True)
    write_json(args.out, rows)


def tpe_cost_rows(args: argparse.Namespace, arm: str) -> list[dict[str, Any]]:
    """One sampler's rows of :func:`tpe_cost` (run in a process of its own)."""
    import optuna
    from optuna.trial import TrialState

    from orchestrator.spec import spec_from_mapping
    from orchestrator.study.samplers import build_sampler
    from search_spaces import preset_mapping

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ints = preset_mapping(args.space)
    floats = {("bs" if k == "batch_size" else k): {**v, "type": "float"} for k, v in ints.items()}
    rows = []
    for label, space_map in zip(SPACES, (ints, floats)):
        for multivariate in (False, True):
            spec = spec_from_mapping({"name": "cost", "search_space": space_map, "budget": {"max_epochs": 51},
                                      "objective": {"metric": "val_accuracy", "mode": "max"},
                                      "sampler": {"name": "tpe", "multivariate": multivariate,
                                                  **({"history": None} if arm == "stepsize_all" else {})}})
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
            if arm == "optuna":  # Optuna as shipped (this process never builds stepsize's sampler)
                study.sampler = optuna.samplers.TPESampler(
                    seed=spec.seed, multivariate=multivariate, constant_liar=True,
                    n_startup_trials=spec.sampler.options["n_startup_trials"])
            else:
                study.sampler = build_sampler(spec)
            walls, cpus = [], []
            for _ in range(30):
                wall, cpu = time.perf_counter(), time.process_time()
                trial = study.ask()
                spec.search_space.suggest(trial)
                walls.append(1000 * (time.perf_counter() - wall))
                cpus.append(1000 * (time.process_time() - cpu))
                study.tell(trial, None, state=TrialState.PRUNED)
            rows.append({"space": label, "multivariate": multivariate, "sampler": ARMS[arm], "trials": args.trials,
                         "cpu_ms_p50": round(percentile(cpus, 0.5), 1), "cpu_ms_p95": round(percentile(cpus, 0.95), 1),
                         "wall_ms_p50": round(percentile(walls, 0.5), 1), "wall_ms_p95": round(percentile(walls, 0.95), 1)})
    return rows


def _storage(kind: str, folder: str) -> Any:
    """None (in memory), stepsize's SQLite storage, or the same with WAL and synchronous=NORMAL set
    by one more connect listener (stepsize's storage sets them itself too)."""
    if kind == "memory":
        return None
    from orchestrator.study.storage import make_storage

    storage = make_storage(f"sqlite:///{folder}/optuna.db")
    if kind == "sqlite-wal":
        from sqlalchemy import event

        engine = storage.engine

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")

        engine.dispose()
    return storage


def _stock_tpe(spec: Any) -> Any:
    """Optuna's own TPESampler with the options stepsize's ``tpe`` has in ``spec``."""
    import optuna

    opts = spec.sampler.options
    return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=opts["n_startup_trials"],
                                      multivariate=opts["multivariate"], constant_liar=opts["constant_liar"],
                                      n_ei_candidates=opts["n_ei_candidates"])


def driver_only(args: argparse.Namespace) -> None:
    """The driver's share at scale: stepsize's searcher (TPE on SQLite) and ASHA over ``--trials``
    trials whose epochs are played in-process (two at a time, as with concurrency 2)."""
    from orchestrator.workloads.lcbench import load_surrogate

    surrogate = load_surrogate(args.data_dir)
    sampler = RssSampler()
    with tempfile.TemporaryDirectory(dir=str(ROOT / "bench")) as tmp:  # on disk, as the default storage
        spec = lcbench_spec(args.task, 0, args.space, surrogate.folder, Path(tmp),
                            {"budget": {"trials": args.trials, "max_epochs": args.max_epochs},
                             "sampler": {"name": "tpe", "rung_model": not args.no_rung_model}})
        trace = Trace(10**12)
        rss_before = rss_mib()
        sampler.start()
        started = time.perf_counter()
        replay(spec, surrogate, trace, storage=_storage(args.storage, tmp), max_trials=args.trials,
               sampler=_stock_tpe(spec) if args.stock_tpe else None, concurrency=args.concurrency,
               owned=not args.plain_storage)
        wall = time.perf_counter() - started
        peak = sampler.stop()
    result = {
        "mode": "driver only (no Ray): real searcher, sampler and ASHA",
        "sampler": "optuna.samplers.TPESampler (stock)" if args.stock_tpe else "stepsize's tpe (build_sampler)",
        "storage": args.storage,
        "study read through": "storage" if args.plain_storage else "the driver's in-memory view (OwnedStudyStorage)",
        "concurrency": args.concurrency or 2,
        "sampler_options": spec.sampler.options,
        "trials": len(trace.trials), "epochs_reported": trace.epochs, "task": args.task, "space": args.space,
        "max_epochs": args.max_epochs, "wall_s": round(wall, 1), "results_per_s": round(trace.epochs / wall, 1),
        **suggest_ms(trace.suggest_seconds),
        "driver_rss_mib_before": round(rss_before, 1),
        "driver_rss_mib_peak": round(peak, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    print(json.dumps(result, indent=1))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
