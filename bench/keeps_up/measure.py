"""A driver that keeps up: stepsize's wall time against the compute floor and against stock Ray
Tune, with 16 trials at once whose epochs only sleep.

The workload (``bench/keeps_up/sleep_workload.py``) sleeps ``epoch_s`` seconds an epoch and reports
a val_loss computed from its configuration, so a trial's own compute is known exactly and every
second of wall time beyond it is the orchestrator's. Each case (an epoch length and a number of
trials) runs every arm once, one after the other, each in a fresh Python subprocess that starts
its own Ray with ``ray.init(num_cpus=16)`` (16 logical CPUs on this 2-core machine) and shuts it
down at the end:

* ``stepsize``: ``orchestrator.api.launch`` with a StudySpec (``workload:
  bench.keeps_up.sleep_workload:sleeps``), sampler ``tpe`` (the default: independent TPE, constant
  liar, seed 0), ASHA (grace period 1, reduction factor 3, max_t = max epochs), ``concurrency:
  16``, 1 CPU per trial; the default stores in a temp folder: Optuna on SQLite, MLflow on SQLite
  (tracking on). Ray is started by the benchmark before ``launch`` (``preflight`` and
  ``ray.init`` with ``ensure_ray``'s options plus ``num_cpus=16``); ``launch`` finds it running.
* ``stepsize_notrack`` (optional): the same with ``STEPSIZE_TRACKING=off`` (no MLflow record).
* ``raytune``: stock Ray Tune: ``tune.Tuner`` + ``OptunaSearch`` (``TPESampler(seed=0,
  constant_liar=True)``, the same space) + ``ASHAScheduler(grace_period=1, reduction_factor=3,
  max_t=max epochs)``, ``reuse_actors=True``, ``max_concurrent_trials=16``, 1 CPU per trial,
  default RunConfig otherwise (``verbose=0``), ``ray.init(num_cpus=16, include_dashboard=False)``.

Timed from outside stepsize: t0 is the subprocess's first statement; every epoch's start and end
are written by the workload in the worker (``time.time()``; the workers run on this machine, so
their clock is the driver's). Per arm:

* start-up: t0 until the first epoch of the first trial begins (imports, ``ray.init`` (also alone),
  study and Tuner set-up, the first worker and its trial);
* wall after start-up: from there until ``launch`` / ``fit`` returned (``ray.shutdown`` not in it);
* epochs trained, and the floor: epochs x epoch_s / 16 (the wall time 16 slots with no overhead
  need for those epochs); the lower bound max(floor, longest trial's epochs x epoch_s); the packing
  floor: the same trials, in the order they started, each epochs x epoch_s long, packed greedily
  onto 16 slots with no overhead (what the tail of a study costs even without overhead);
* overhead % over the floor = (wall after start-up - floor) / floor, and over the other two;
* where the idle slot time goes (16 x wall after start-up - epochs x epoch_s, per worker process,
  divided by 16 to read as wall seconds): ramp-up (a worker's first epoch after the first
  epoch of all), the waits inside reports (per-result gap: the next epoch's start minus this
  epoch's end in the same trial), trial switches (a worker's last epoch of one trial to the first
  epoch of its next), sleeps longer than asked, the tail (a worker's last epoch to the last
  result of the study) and the end (the last result to the end of ``launch`` / ``fit``). They add
  up to the overhead when exactly 16 worker processes ran trials;
* CPU: the driver process (per thread: Tune's event loop is the main thread), its whole process
  tree (Ray's gcs_server, raylet and workers descend from it, ``/proc``, sampled every 0.5 s)
  and the machine's busy share, over the after-start-up window.

Usage (from the repository root; each arm's log goes beside the JSON)::

    .venv/bin/python -m bench.keeps_up.measure --quick                 # 1 s x 24, 0.1 s x 48 trials
    .venv/bin/python -m bench.keeps_up.measure                         # 1 s x 256, 0.1 s x 400 trials
    .venv/bin/python -m bench.keeps_up.measure --arms stepsize,stepsize_notrack,raytune   # as in docs/benchmarks.md
    .venv/bin/python -m bench.keeps_up.measure --cases 0.1:480 --arms stepsize --profile

``--profile`` runs each arm's driver main thread under cProfile and keeps the top functions
(it slows the driver down: an investigation, not the comparison).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()
_WALL0 = time.time()

import argparse  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import (  # noqa: E402
    CLK_TCK,
    describe,
    git_state,
    machine_info,
    results_file,
    temp_study,
    versions,
    wait_for_quiet,
    write_json,
)
from bench.overhead.digits_overhead import (  # noqa: E402
    TreeSampler,
    _become_subreaper,
    add_child_options,
    run_child,
)

MODULE = "bench.keeps_up.measure"  # each arm runs as ``python -m MODULE --child ARM``
ARMS = ("stepsize", "raytune")
EXTRA_ARMS = ("stepsize_notrack",)
SLOTS = 16  # trials at once, and Ray's logical CPUs
METRIC = "val_loss"
WORKLOAD = "bench.keeps_up.sleep_workload:sleeps"
DEFAULT_CASES = "1.0:256,0.1:400"
QUICK_CASES = "1.0:24,0.1:48"
TARGETS = {1.0: 5.0, 0.1: 15.0}  # overhead % over the floor, per epoch length
SPACE = {  # the digits ``default`` preset's shape; the stock arm's is the same in tune's terms
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99},
}


def local_time(wall: float) -> float:
    """A wall-clock time (``time.time()``, e.g. from a Ray worker on this machine) on this
    process's ``perf_counter`` scale."""
    return wall - _WALL0 + _T0


# --------------------------------------------------------------------------------------------
# The driver's CPU by thread
# --------------------------------------------------------------------------------------------
def driver_threads() -> dict[int, tuple[str, float]]:
    """tid -> (name, CPU seconds) for every thread of this process (the Python thread name where
    there is one, else the kernel's)."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.find("(") + 1 : data.rfind(")")]
        fields = data[data.rfind(")") + 2 :].split()
        tid = int(entry)
        name = "main" if tid == os.getpid() else names.get(tid, comm)
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def _uptime_offset() -> float:
    """perf_counter minus seconds since boot (to place a process's start time on our scale)."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.perf_counter() - uptime


def process_info(pid: int) -> tuple[str, float | None]:
    """(command line, start time in seconds since boot) of ``pid``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read(300).replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        start = int(data[data.rfind(")") + 2 :].split()[19]) / CLK_TCK  # field 22: starttime
    except OSError:
        return "", None
    return command, start


class Sampler(TreeSampler):
    """The process tree's and the machine's CPU (:class:`TreeSampler`), each process's CPU, command
    line and start time, and this process's threads."""

    def __init__(self, interval: float = 0.5):
        self.threads: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self.procs: list[tuple[float, dict[int, float]]] = []
        self.info: dict[int, tuple[str, float | None]] = {}
        self.offset = _uptime_offset()
        super().__init__(interval)

    def sample(self) -> None:
        threads = driver_threads()
        super().sample()
        now = time.perf_counter()
        with self._lock:
            procs = dict(self.last)
        for pid in procs:
            if pid not in self.info:
                command, start = process_info(pid)
                self.info[pid] = (command, None if start is None else start + self.offset)
        self.threads.append((now, threads))
        self.procs.append((now, procs))

    @staticmethod
    def _between(history: list[tuple[float, dict[int, Any]]], a: float, b: float) -> tuple[dict, dict]:
        start = ([h for h in history if h[0] <= a] or history[:1])[-1][1]
        end = ([h for h in history if h[0] <= b] or history[-1:])[-1][1]
        return start, end

    def threads_between(self, a: float, b: float) -> dict[str, float]:
        """CPU seconds of the driver's threads between ``a`` and ``b``, summed by thread name."""
        start, end = self._between(list(self.threads), a, b)
        out: dict[str, float] = {}
        for tid, (name, cpu) in end.items():
            out[name] = out.get(name, 0.0) + cpu - (start[tid][1] if tid in start else 0.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def processes_between(self, a: float, b: float, trial_workers: set[int]) -> dict[str, Any]:
        """CPU seconds of the process tree between ``a`` and ``b`` by kind of process, and how many
        worker processes were started in the window."""
        start, end = self._between(list(self.procs), a, b)
        out: dict[str, float] = {}
        started = 0
        for pid, cpu in end.items():
            kind = self.kind(pid, trial_workers)
            out[kind] = out.get(kind, 0.0) + cpu - start.get(pid, 0.0)
            born = self.info.get(pid, ("", None))[1]
            started += kind.endswith("workers") and born is not None and a <= born <= b
        return {"cpu_s": {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])},
                "worker_processes_started": started}

    def kind(self, pid: int, trial_workers: set[int]) -> str:
        command = self.info.get(pid, ("", None))[0]
        if pid == os.getpid():
            return "driver"
        if pid in trial_workers:
            return "trial workers"
        if command.startswith("ray::") or "default_worker.py" in command:
            return "other Ray workers"  # idle, prestarted, or started and removed before a trial ran
        for name in ("raylet", "gcs_server"):
            if name in command:
                return name
        return "other"  # Ray's agents, log monitor...


SAMPLER: Sampler | None = None


# --------------------------------------------------------------------------------------------
# Child: one arm
# --------------------------------------------------------------------------------------------
def read_timeline(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(epoch rows, entered rows) from the workers' files, times on this process's scale."""
    epochs, entered = [], []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            row["trial"] = str(row["trial"])
            if "entered" in row:
                row["entered"] = local_time(row["entered"])
                entered.append(row)
            else:
                row["began"], row["t"] = local_time(row["began"]), local_time(row["t"])
                epochs.append(row)
    return epochs, entered


def ray_options() -> dict[str, Any]:
    return {"num_cpus": SLOTS, "include_dashboard": False}


def run_stepsize(args: argparse.Namespace, workdir: Path, marks: dict[str, Any]) -> dict[str, Any]:
    if args.child == "stepsize_notrack":
        os.environ["STEPSIZE_TRACKING"] = "off"
    from orchestrator.api import launch
    from orchestrator.run.ray_session import apply_tune_settings, preflight, worker_env

    apply_tune_settings()  # before Ray Tune is imported, as launch does
    import ray
    from ray import tune  # noqa: F401 - imported here, as by the stock arm, not inside ray.init's time

    marks["imports_done_at"] = time.perf_counter()
    timeline = workdir / "timeline"
    timeline.mkdir()
    spec = temp_study(
        "keeps_up", workdir,
        workload=WORKLOAD,
        workload_options={"epoch_s": args.epoch_s, "timeline": str(timeline)},
        search_space=SPACE,
        objective={"metric": METRIC, "mode": "min"},
        sampler="tpe",
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3},
        budget={"trials": args.trials, "max_epochs": args.max_epochs},
        concurrency=SLOTS,
        resources={"cpus": 1, "gpu": 0},
        seed=args.seed,
    )
    started = time.perf_counter()
    # ensure_ray's own start of a local Ray, with 16 logical CPUs; launch then finds Ray running.
    preflight(spec.address)
    ray.init(**ray_options(), runtime_env=worker_env(), logging_level=logging.ERROR, log_to_driver=False,
             configure_logging=True)
    marks["ray_init_s"] = time.perf_counter() - started
    marks["fit_called_at"] = time.perf_counter()
    summary = launch(spec, quiet=True)
    marks["end"] = time.perf_counter()
    extra = {"optuna_states": dict(summary.counts), "best_value": summary.best_value,
             "tracking": args.child != "stepsize_notrack"}
    started = time.perf_counter()
    ray.shutdown()
    extra["ray_shutdown_s"] = time.perf_counter() - started
    return extra


def run_raytune(args: argparse.Namespace, workdir: Path, marks: dict[str, Any]) -> dict[str, Any]:
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from bench.keeps_up.sleep_workload import stock_trainable

    marks["imports_done_at"] = time.perf_counter()
    timeline = workdir / "timeline"
    timeline.mkdir()
    started = time.perf_counter()
    ray.init(**ray_options())
    marks["ray_init_s"] = time.perf_counter() - started
    searcher = OptunaSearch(metric=METRIC, mode="min",
                            sampler=optuna.samplers.TPESampler(seed=args.seed, constant_liar=True))
    choices = SPACE["batch_size"]["choices"]
    tuner = tune.Tuner(
        tune.with_resources(stock_trainable, {"cpu": 1}),
        param_space={
            "learning_rate": tune.loguniform(SPACE["learning_rate"]["low"], SPACE["learning_rate"]["high"]),
            "batch_size": tune.choice(choices),
            "momentum": tune.uniform(SPACE["momentum"]["low"], SPACE["momentum"]["high"]),
            "epoch_s": args.epoch_s,
            "max_epochs": args.max_epochs,
            "timeline": str(timeline),
        },
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=ASHAScheduler(metric=METRIC, mode="min", grace_period=1, reduction_factor=3,
                                    max_t=args.max_epochs),
            num_samples=args.trials,
            max_concurrent_trials=SLOTS,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(workdir / "ray_results"), verbose=0),
    )
    marks["fit_called_at"] = time.perf_counter()
    grid = tuner.fit()
    marks["end"] = time.perf_counter()
    extra: dict[str, Any] = {"ray_errors": len(grid.errors)}
    started = time.perf_counter()
    ray.shutdown()
    extra["ray_shutdown_s"] = time.perf_counter() - started
    return extra


def packing_floor(lengths: list[float], slots: int) -> float:
    """Greedy list scheduling of ``lengths`` (in the given order) onto ``slots``: the makespan."""
    free = [0.0] * slots
    end = 0.0
    for length in lengths:
        start = heapq.heappop(free)
        end = max(end, start + length)
        heapq.heappush(free, start + length)
    return end


def summarize_arm(rows: list[dict[str, Any]], entered: list[dict[str, Any]], marks: dict[str, Any], epoch_s: float,
                  max_epochs: int) -> dict[str, Any]:
    """The arm's numbers from its timeline (times on this process's perf_counter scale)."""
    rows = sorted(rows, key=lambda r: r["t"])
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_trial.setdefault(r["trial"], []).append(r)
    for rs in by_trial.values():
        rs.sort(key=lambda r: r["epoch"])
    start = min(r["began"] for r in rows)
    end = marks["end"]
    last_result = rows[-1]["t"]
    wall = end - start
    epochs = len(rows)
    floor = epochs * epoch_s / SLOTS
    longest = max(len(rs) for rs in by_trial.values()) * epoch_s
    order = sorted(by_trial.values(), key=lambda rs: rs[0]["began"])
    packed = packing_floor([len(rs) * epoch_s for rs in order], SLOTS)
    bound = max(floor, longest)

    gaps = [b["began"] - a["t"] for rs in by_trial.values() for a, b in zip(rs, rs[1:])]
    oversleep = [r["t"] - r["began"] - epoch_s for r in rows]
    by_pid: dict[int, list[list[dict[str, Any]]]] = {}
    for rs in order:
        by_pid.setdefault(rs[0]["pid"], []).append(rs)
    switches, ramp, tail = [], [], []
    for trials in by_pid.values():
        ramp.append(trials[0][0]["began"] - start)
        tail.append(last_result - trials[-1][-1]["t"])
        switches.extend(nxt[0]["began"] - prev[-1]["t"] for prev, nxt in zip(trials, trials[1:]))
    firsts = sorted(trials[0][0]["began"] for trials in by_pid.values())
    workers = len(by_pid)
    # idle slot-seconds by cause, as wall seconds (divided by the slots)
    parts = {
        "ramp_up": sum(ramp) / SLOTS,
        "result_gaps": sum(gaps) / SLOTS,
        "trial_switches": sum(switches) / SLOTS,
        "oversleep": sum(oversleep) / SLOTS,
        "tail": sum(tail) / SLOTS,
        "end": (end - last_result) * workers / SLOTS,
        "missing_workers": (SLOTS - workers) * wall / SLOTS,  # slots no worker process filled (negative: more)
    }
    out: dict[str, Any] = {
        "startup_s": start - _T0,
        "wall_after_startup_s": wall,
        "total_s": end - _T0,
        "epochs": epochs,
        "trials": len(by_trial),
        "trials_full": sum(len(rs) >= max_epochs for rs in by_trial.values()),
        "epochs_per_trial": epochs / max(1, len(by_trial)),
        "floor_s": floor,
        "longest_trial_s": longest,
        "lower_bound_s": bound,
        "packing_floor_s": packed,
        "overhead_s": wall - floor,
        "overhead_pct": 100 * (wall - floor) / floor,
        "overhead_pct_lower_bound": 100 * (wall - bound) / bound,
        "overhead_pct_packing": 100 * (wall - packed) / packed,
        "idle_parts_s": parts,
        "idle_parts_sum_s": sum(parts.values()),
        "worker_processes": workers,
        "ramp_up_s": firsts[min(SLOTS, len(firsts)) - 1] - start,  # until the 16th worker's first epoch
        "after_last_result_s": end - last_result,
        "per_result_gap_s": describe(gaps),
        "trial_switch_s": describe(switches),
        "oversleep_s": describe(oversleep),
        "first_trial_entered_at": min(r["entered"] for r in entered) - _T0 if entered else None,
        "best_final_val_loss": min((rs[-1]["val_loss"] for rs in by_trial.values() if len(rs) >= max_epochs),
                                   default=None),
    }
    for key, value in marks.items():
        if key.endswith("_at"):
            out[key] = value - _T0
        elif key != "end":
            out[key] = value
    if SAMPLER is not None:
        SAMPLER.sample()
        a, b = SAMPLER.at(start), SAMPLER.at(end)
        window = b["t"] - a["t"]
        threads = SAMPLER.threads_between(start, end)
        driver = sum(threads.values())
        busy = b["sys_busy_s"] - a["sys_busy_s"]
        tree = b["tree_cpu_s"] - a["tree_cpu_s"]
        pids = set(by_pid)
        born = {pid: SAMPLER.info[pid][1] for pid in pids if SAMPLER.info.get(pid, ("", None))[1] is not None}
        out["worker_process_first_started_at"] = min(born.values()) - _T0 if born else None
        # a trial worker's process start to its first epoch: Ray's worker start, the actor, imports
        out["worker_process_start_to_first_epoch_s"] = describe([by_pid[pid][0][0]["began"] - t for pid, t in born.items()])
        out["processes"] = SAMPLER.processes_between(start, end, pids)
        out["processes_startup"] = SAMPLER.processes_between(_T0, start, pids)
        out["cpu"] = {
            "window_s": window,
            "driver_cores": driver / window,  # the driver process, all threads
            "driver_main_thread_share": threads.get("main", 0.0) / window,  # Tune's event loop
            "driver_threads_s": {k: round(v, 2) for k, v in list(threads.items())[:8]},
            "tree_cores": tree / window,  # driver, gcs_server, raylet, workers
            "machine_busy_share": busy / max(1e-9, b["sys_total_s"] - a["sys_total_s"]),
            "other_load_cores": max(0.0, busy - tree) / window,
            "procs_seen": b["procs"],
        }
    return out


RUNNERS = {"stepsize": run_stepsize, "stepsize_notrack": run_stepsize, "raytune": run_raytune}


def child_main(args: argparse.Namespace) -> None:
    global SAMPLER
    SAMPLER = Sampler(0.5)
    workdir = Path(args.workdir)
    marks: dict[str, Any] = {}
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        extra = RUNNERS[args.child](args, workdir, marks)
    finally:
        if profiler is not None:
            profiler.disable()
    rows, entered = read_timeline(workdir / "timeline")
    out = summarize_arm(rows, entered, marks, args.epoch_s, args.max_epochs)
    out.update(extra, arm=args.child, epoch_s=args.epoch_s, trials_asked=args.trials)
    if profiler is not None:
        import io
        import pstats

        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats(key).print_stats(40)
            out[f"profile_{key}"] = buf.getvalue()
    if args.dump_results:
        out["rows"] = rows
    Path(args.child_out).write_text(json.dumps(out, indent=1, default=str))


# --------------------------------------------------------------------------------------------
# Parent: the cases, each arm in its own subprocess
# --------------------------------------------------------------------------------------------
def parse_cases(text: str) -> list[tuple[float, int]]:
    cases = []
    for item in text.split(","):
        epoch_s, _, trials = item.strip().partition(":")
        cases.append((float(epoch_s), int(trials)))
    return cases


def run_arm(arm: str, epoch_s: float, trials: int, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"keeps_up_{arm}_") as tmp:
        child_out = Path(tmp) / "out.json"
        command = ["--child", arm, "--child-out", str(child_out), "--workdir", tmp, "--epoch-s", str(epoch_s),
                   "--trials", str(trials), "--max-epochs", str(args.max_epochs), "--seed", str(args.seed)]
        command += ["--profile"] * args.profile + ["--dump-results"] * args.dump_results
        return run_child(MODULE, command, what=f"arm {arm} at {epoch_s:g} s", log_path=log_dir / f"{arm}_{epoch_s:g}s.log",
                         child_out=child_out, nice=args.nice, timeout=args.timeout)


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ms(stats: dict[str, Any], key: str = "median") -> str:
    return "-" if not stats.get("n") else f"{1000 * stats[key]:.0f}"


def tables(cases: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| epoch | arm | start-up s (ray.init) | ramp-up s | wall after start-up s | epochs (trials) | floor s | "
        "lower bound s | packing floor s | overhead over floor | over lower bound | over packing floor | "
        "per-result gap median / p90 ms | trial switch median / p90 ms | driver main thread busy | machine busy |",
        "|" + "---|" * 16,
    ]
    for key, case in cases.items():
        for arm, r in case["arms"].items():
            cpu = r.get("cpu", {})
            lines.append(
                f"| {key} s | {arm} | {r['startup_s']:.1f} ({r['ray_init_s']:.1f}) | {r['ramp_up_s']:.1f} | "
                f"{r['wall_after_startup_s']:.1f} | {r['epochs']} ({r['trials']}) | {r['floor_s']:.1f} | "
                f"{r['lower_bound_s']:.1f} | {r['packing_floor_s']:.1f} | {r['overhead_pct']:.0f}% | "
                f"{r['overhead_pct_lower_bound']:.0f}% | {r['overhead_pct_packing']:.0f}% | "
                f"{_ms(r['per_result_gap_s'])} / {_ms(r['per_result_gap_s'], 'p90')} | "
                f"{_ms(r['trial_switch_s'])} / {_ms(r['trial_switch_s'], 'p90')} | "
                f"{100 * cpu.get('driver_main_thread_share', float('nan')):.0f}% | "
                f"{100 * cpu.get('machine_busy_share', float('nan')):.0f}% |"
            )
    lines += [
        "",
        "| epoch | arm | overhead s | ramp-up | result gaps | trial switches | oversleep | tail | end | "
        "missing workers | sum | workers |",
        "|" + "---|" * 12,
    ]
    for key, case in cases.items():
        for arm, r in case["arms"].items():
            p = r["idle_parts_s"]
            lines.append(
                f"| {key} s | {arm} | {r['overhead_s']:.1f} | {p['ramp_up']:.1f} | {p['result_gaps']:.1f} | "
                f"{p['trial_switches']:.1f} | {p['oversleep']:.2f} | {p['tail']:.1f} | {p['end']:.1f} | "
                f"{p['missing_workers']:.1f} | {r['idle_parts_sum_s']:.1f} | {r['worker_processes']} |"
            )
    lines += [
        "",
        "| epoch | arm | CPU after start-up, cores: driver (main thread) | trial workers | other Ray workers | "
        "raylet | gcs_server | other | machine busy | worker processes started | worker start to first epoch "
        "median s |",
        "|" + "---|" * 11,
    ]
    for key, case in cases.items():
        for arm, r in case["arms"].items():
            cpu, procs = r.get("cpu"), r.get("processes")
            if not cpu or not procs:
                continue
            window = cpu["window_s"]
            by = procs["cpu_s"]
            cores = {k: by.get(k, 0.0) / window for k in ("driver", "trial workers", "other Ray workers", "raylet",
                                                          "gcs_server", "other")}
            boot = r.get("worker_process_start_to_first_epoch_s", {})
            lines.append(
                f"| {key} s | {arm} | {cores['driver']:.2f} ({cpu['driver_main_thread_share']:.2f}) | "
                f"{cores['trial workers']:.2f} | {cores['other Ray workers']:.2f} | {cores['raylet']:.2f} | "
                f"{cores['gcs_server']:.2f} | {cores['other']:.2f} | {100 * cpu['machine_busy_share']:.0f}% | "
                f"{procs['worker_processes_started']} | {_f(boot.get('median'))} |"
            )
    return "\n".join(lines)


def verdicts(cases: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for key, case in cases.items():
        ratios = case["ratios"]
        for arm, r in case["arms"].items():
            target = case.get("target_pct")
            if arm.startswith("stepsize") and target is not None:
                met = r["overhead_pct"] <= target
                out.append(f"{key} s, {arm}: overhead {r['overhead_pct']:.1f}% over the floor "
                           f"(target <= {target:g}%: {'met' if met else 'missed'})")
        for name, value in ratios.items():
            verdict = ""
            if name == "stepsize/raytune overhead":
                verdict = " (target < 1: met)" if value < 1 else " (target < 1: missed)"
            out.append(f"{key} s, {name}: {value:.2f}{verdict}")
    return out


def parent_main(args: argparse.Namespace) -> None:
    cases_asked = parse_cases(QUICK_CASES if args.quick and args.cases is None else args.cases or DEFAULT_CASES)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for arm in arms:
        if arm not in ARMS + EXTRA_ARMS:
            raise SystemExit(f"unknown arm {arm!r}; choose from {', '.join(ARMS + EXTRA_ARMS)}")
    out_path = Path(args.out or results_file(__file__, "keeps_up_quick.json" if args.quick else "keeps_up.json"))
    log_dir = out_path.parent / (out_path.stem + "_logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    subreaper = _become_subreaper()
    cases: dict[str, dict[str, Any]] = {}
    for epoch_s, trials in cases_asked:
        key = f"{epoch_s:g}"
        case: dict[str, Any] = {"epoch_s": epoch_s, "trials": trials, "target_pct": TARGETS.get(epoch_s), "arms": {}}
        cases[key] = case
        for arm in arms:
            busy = wait_for_quiet(args.wait_idle) if args.wait_idle > 0 else None
            print(f"{arm}: {trials} trials, {epoch_s:g} s epochs, up to {args.max_epochs} epochs "
                  f"(machine busy before: {'-' if busy is None else f'{100 * busy:.0f}%'}) ...", file=sys.stderr, flush=True)
            r = run_arm(arm, epoch_s, trials, args, log_dir)
            r["busy_before"] = busy
            case["arms"][arm] = r
            print(f"  start-up {r['startup_s']:.1f} s, after start-up {r['wall_after_startup_s']:.1f} s, "
                  f"floor {r['floor_s']:.1f} s, overhead {r['overhead_pct']:.1f}%, {r['epochs']} epochs",
                  file=sys.stderr, flush=True)
        stock = case["arms"].get("raytune")
        case["ratios"] = {}
        if stock is not None:
            for arm, r in case["arms"].items():
                if arm.startswith("stepsize"):
                    case["ratios"][f"{arm}/raytune overhead"] = r["overhead_s"] / stock["overhead_s"]
                    case["ratios"][f"{arm}/raytune wall after start-up"] = (
                        r["wall_after_startup_s"] / stock["wall_after_startup_s"])
        write_json(out_path, _payload(args, cases, subreaper), default=str)  # each case as it ends
    print(tables(cases))
    print()
    print("\n".join(verdicts(cases)))
    print(f"\nJSON: {out_path}")


def _payload(args: argparse.Namespace, cases: dict[str, Any], subreaper: bool) -> dict[str, Any]:
    return {
        "machine": {**machine_info(), "gpu": None},
        "settings": {"slots": SLOTS, "max_epochs": args.max_epochs, "seed": args.seed, "quick": args.quick,
                     "arms": args.arms, "nice": args.nice, "wait_idle": args.wait_idle, "profile": args.profile,
                     "subreaper": subreaper, "targets_pct": {f"{k:g}": v for k, v in TARGETS.items()}},
        "cases": cases,
        "versions": versions("ray", "optuna", "mlflow", "torch", "stepsize"),
        "git": git_state(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=None, help=f"EPOCH_S:TRIALS,... (default {DEFAULT_CASES}; "
                                                      f"--quick: {QUICK_CASES})")
    parser.add_argument("--max-epochs", type=int, default=9, help="per trial, and ASHA's max_t (default 9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"cases {QUICK_CASES}, a smoke test")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated, from " + ", ".join(ARMS + EXTRA_ARMS))
    parser.add_argument("--out", default=None, help="the JSON (default results/keeps_up.json, keeps_up_quick.json)")
    add_child_options(parser, "arm", ARMS + EXTRA_ARMS, timeout=1800.0, wait_idle=60.0)
    parser.add_argument("--epoch-s", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
