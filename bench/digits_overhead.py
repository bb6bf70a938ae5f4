#!/usr/bin/env python
"""Orchestration overhead on the digits CNN study: stepsize vs plain Optuna vs stock Ray Tune.

The same study (digits CNN, the ``default`` search space, TPE with one seed, successive-halving
early stopping at epochs 1, 3, 9 with reduction factor 3, at most ``--max-epochs`` epochs a trial)
is run three ways, one after the other, each in a fresh Python subprocess:

* ``stepsize``  -- ``orchestrator.api.launch`` (Optuna TPE -> stepsize's Tune searcher -> ASHA),
  2 concurrent trials of 1 CPU, fresh SQLite storage and results folder in a temp dir.
* ``optuna``    -- plain Optuna in one process: TPESampler(seed, multivariate) +
  SuccessiveHalvingPruner(min_resource=1, reduction_factor=3), ``study.optimize``; the objective
  runs stepsize's own training code (``orchestrator.workloads.digits._train``) through a
  TrialContext whose report goes to ``trial.report`` / ``trial.should_prune``.
* ``raytune``   -- stock Ray Tune: ``tune.Tuner`` + ``OptunaSearch`` + ``ASHAScheduler``,
  ``reuse_actors=True``, 2 concurrent trials of 1 CPU, a plain function trainable that loads the
  data itself and calls ``tune.report`` every epoch; default RunConfig otherwise.

Measured per variant (all times from ``time.perf_counter`` in the subprocess; t0 is the first
statement of the subprocess, before any heavy import):

* start-up: t0 until the first epoch of the first trial starts. For the Ray variants that is
  (driver receives the first result) - (that epoch's own training time, ``epoch_time_s``), so it
  holds imports, study creation, ``ray.init``, worker start, actor creation and the first trial's
  set-up; ``ray.init`` is also shown on its own. For plain Optuna it is t0 until the objective is
  first entered (imports, data load, study creation).
* wall after start-up: end of the study (``launch`` / ``fit`` / ``optimize`` returned) minus
  the end of start-up. ``ray.shutdown`` is not in it (shown separately).
* CPU utilisation: CPU seconds of the subprocess and all its descendants (Ray's gcs_server,
  raylet, workers... are descendants of the driver) over the after-start-up window, divided by
  the window and the number of cores. Read from /proc/<pid>/stat (utime+stime+cutime+cstime) of
  every process in the tree, sampled every 0.25 s by a thread in the subprocess, keeping each
  process's last value (a process that ends mid-window loses at most 0.25 s). The machine-wide busy share over the
  same window (/proc/stat) is reported too. The parent also records RUSAGE_CHILDREN for the
  whole subprocess in the JSON (it makes itself a child subreaper so orphaned Ray processes are
  reaped by it); for the Ray runs it undercounts (processes killed at shutdown are not all
  reaped through the chain), so the /proc figure is the one reported.
* epochs trained (sum over trials), the sum of per-epoch training time the workload measured
  (``epoch_time_s``); the compute floor (that sum / concurrent slots: the wall time a runner with
  no overhead would need) and the overhead (wall after start-up - floor); trials COMPLETE / PRUNED (diverged trials are counted as PRUNED, as stepsize
  tells them, and also shown separately), and the best trial's final val_loss / val_accuracy
  (among trials that trained all epochs).

Usage::

    .venv/bin/python bench/digits_overhead.py --quick
    .venv/bin/python bench/digits_overhead.py                 # 40 trials x 20 epochs
    .venv/bin/python bench/digits_overhead.py --variants stepsize --env TUNE_GLOBAL_CHECKPOINT_S=1000

On a machine shared with other work use ``--nice -20`` (root; the variants' processes, and Ray's
workers, which Ray starts 15 niceness steps below the driver, get priority) and ``--wait-idle``
(wait for an idle machine before each variant); the "other load" column shows CPU used outside
the measured process tree. ``--repeat N`` runs N rounds and shows the median run.

Investigation options (not needed for the comparison): ``--env KEY=VALUE`` sets an environment
variable in the subprocesses, ``--patch NAME`` applies a named monkeypatch in the stepsize
subprocess (see ``PATCHES``: no_plots, lazy_trial_flush, sqlite_wal, async_report,
no_experiment_checkpoint, inmemory_storage, suggest_ahead, concurrency3, no_runtime_env,
fix_result_buffering), ``--probe`` runs stepsize with a workload that wraps the built-in digits
CNN and adds the worker's send time to each report (per-result latency), ``--profile`` runs the
subprocess under cProfile and keeps the top functions. ``--variants optuna_1t`` adds plain Optuna
with torch limited to one thread. Results of such runs: ``bench/results/digits_overhead_changes.json``
and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("stepsize", "optuna", "raytune")
EXTRA_VARIANTS = ("optuna_1t",)  # plain Optuna with torch limited to 1 thread (a sensitivity check)
CORES = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
METRIC = "val_loss"


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc
# --------------------------------------------------------------------------------------------
def _read_proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, utime+stime+cutime+cstime in seconds) for every process we can read."""
    out: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2 :].split()
        # fields[0] is state (field 3); ppid is field 4, utime..cstime are fields 14..17.
        ppid = int(fields[1])
        ticks = sum(int(x) for x in fields[11:15])
        out[int(entry)] = (ppid, ticks / CLK_TCK)
    return out


def tree_cpu(root: int | None = None) -> dict[int, float]:
    """pid -> CPU seconds for ``root`` (default: this process) and all its live descendants."""
    root = os.getpid() if root is None else root
    stats = _read_proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid][1]
        todo.extend(children.get(pid, ()))
    return out


def system_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat; steal excluded)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = parts[:7]
    busy = user + nice + system + irq + softirq
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


class TreeSampler:
    """Samples the process tree's per-process CPU every ``interval`` s in a background thread.

    Ray stops trial actors (and may end idle workers) before ``fit`` returns, so a snapshot at
    the end alone would lose their CPU time; the last value seen for each process is kept (a
    process that ends loses at most ``interval`` s of CPU).
    """

    def __init__(self, interval: float = 0.25):
        import threading

        self.interval = interval
        self.last: dict[int, float] = {}
        self.base: dict[int, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tree-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> dict[int, float]:
        now = tree_cpu()
        with self._lock:
            self.last.update(now)
        return now

    def start_window(self) -> None:
        self.base = self.sample()

    def window_cpu_s(self) -> tuple[float, int]:
        """CPU seconds used by the tree since :meth:`start_window`, and how many processes."""
        self.sample()
        with self._lock:
            base = self.base or {}
            total = sum(value - base.get(pid, 0.0) for pid, value in self.last.items())
            return total, len(self.last)

    def stop(self) -> None:
        self._stop.set()


SAMPLER: TreeSampler | None = None


def snapshot() -> dict[str, float]:
    busy, total = system_busy_s()
    cpu, procs = SAMPLER.window_cpu_s() if SAMPLER is not None else (0.0, 0)
    return {"t": time.perf_counter(), "tree_cpu_s": cpu, "procs": procs, "sys_busy_s": busy, "sys_total_s": total}


# --------------------------------------------------------------------------------------------
# What each subprocess records
# --------------------------------------------------------------------------------------------
class Recorder:
    """Results as the driver sees them, with perf_counter times; turned into the metrics."""

    def __init__(self, slots: int):
        self.slots = slots
        self.results: list[dict[str, Any]] = []  # one per (trial, epoch), first arrival wins
        self._seen: set[tuple[str, int]] = set()
        self.trial_end: dict[str, float] = {}
        self.trial_outcome: dict[str, str] = {}
        self.hook_s: dict[str, list[float]] = {}
        self.marks: dict[str, float] = {}
        self.snap_first: dict[str, float] | None = None
        self.snap_end: dict[str, float] | None = None
        self.extra: dict[str, Any] = {}

    def mark(self, name: str) -> None:
        """Record the first time ``name`` happens."""
        self.marks.setdefault(name, time.perf_counter())

    def hook_time(self, name: str, seconds: float) -> None:
        self.hook_s.setdefault(name, []).append(seconds)

    def result(self, trial: str, epoch: int, metrics: dict[str, Any]) -> None:
        key = (str(trial), int(epoch))
        if key in self._seen:
            return
        now = time.perf_counter()
        self._seen.add(key)
        if self.snap_first is None:
            if SAMPLER is not None:
                SAMPLER.start_window()
            self.snap_first = snapshot()
        row = {
            "trial": str(trial),
            "epoch": int(epoch),
            "t": now,
            "epoch_time_s": float(metrics.get("epoch_time_s", 0.0)),
            "val_loss": _num(metrics.get("val_loss")),
            "val_accuracy": _num(metrics.get("val_accuracy")),
            "train_loss": _num(metrics.get("train_loss")),
        }
        if "sent_at" in metrics:
            row["sent_at"] = float(metrics["sent_at"])
            row["recv_at"] = time.time()
        if "pid" in metrics:
            row["pid"] = int(metrics["pid"])
        config = metrics.get("config") if isinstance(metrics.get("config"), dict) else {}
        batch = metrics.get("batch_size", metrics.get("config/batch_size", config.get("batch_size")))
        if batch is not None:
            row["batch_size"] = int(batch)
        self.results.append(row)

    def end(self) -> None:
        self.marks["end"] = time.perf_counter()
        self.snap_end = snapshot()

    # -- derived numbers -----------------------------------------------------------------------
    def summary(self, max_epochs: int) -> dict[str, Any]:
        rows = sorted(self.results, key=lambda r: r["t"])
        first = rows[0]
        if "first_trial_start" in self.marks:  # plain Optuna: the objective was entered
            startup_end = self.marks["first_trial_start"]
        else:
            startup_end = first["t"] - first["epoch_time_s"]
        end = self.marks["end"]
        by_trial: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_trial.setdefault(r["trial"], []).append(r)
        epoch_compute = sum(r["epoch_time_s"] for r in rows)
        wall_after = end - startup_end
        out: dict[str, Any] = {
            "startup_s": startup_end - _T0,
            "wall_after_startup_s": wall_after,
            "total_s": end - _T0,
            "epochs": len(rows),
            "epoch_compute_s": epoch_compute,
            "trials_seen": len(by_trial),
            "wall_per_epoch_s": wall_after / max(1, len(rows)),
            "epoch_time_median_s": statistics.median(r["epoch_time_s"] for r in rows),
            "slots": self.slots,
            # slot-seconds not spent inside an epoch, per epoch trained
            "idle_slot_s_per_epoch": (self.slots * wall_after - epoch_compute) / max(1, len(rows)),
            # the wall time a runner without overhead would need for these epochs at this speed
            "compute_floor_s": epoch_compute / self.slots,
            "overhead_s": wall_after - epoch_compute / self.slots,
        }
        if "fit_end_at" in self.marks:
            out["after_fit_s"] = end - self.marks["fit_end_at"]  # e.g. stepsize's end-of-study records
        for key, value in self.marks.items():
            if key.endswith("_at"):
                out[key] = value - _T0  # a point in time, as seconds since the subprocess began
            elif key not in ("end", "first_trial_start"):
                out[key] = value
        if self.snap_first and self.snap_end:
            a, b = self.snap_first, self.snap_end
            window = b["t"] - a["t"]
            out["cpu_window_s"] = window
            out["cpu_tree_s"] = b["tree_cpu_s"] - a["tree_cpu_s"]
            out["cpu_util"] = out["cpu_tree_s"] / window / CORES if window > 0 else None
            sys_busy = b["sys_busy_s"] - a["sys_busy_s"]
            out["sys_util"] = sys_busy / max(1e-9, b["sys_total_s"] - a["sys_total_s"])
            # CPU used on the machine by processes outside this variant's tree (other work)
            out["other_load_cores"] = max(0.0, sys_busy - out["cpu_tree_s"]) / window if window > 0 else None
            out["procs_seen"] = b["procs"]
        # per-result gap: time between two consecutive results of one trial beyond the epoch
        gaps = [
            (b["t"] - a["t"]) - b["epoch_time_s"]
            for rs in by_trial.values()
            for a, b in zip(rs, rs[1:])
        ]
        out["per_result_gap_s"] = _stats(gaps)
        by_batch: dict[int, list[float]] = {}
        for r in rows:
            if "batch_size" in r:
                by_batch.setdefault(r["batch_size"], []).append(r["epoch_time_s"])
        out["epoch_time_by_batch_size"] = {
            str(k): {"epochs": len(v), "median_s": statistics.median(v)} for k, v in sorted(by_batch.items())
        }
        # worker-side blocked time per report (probe: worker send times)
        blocked = [
            (b["sent_at"] - b["epoch_time_s"]) - a["sent_at"]
            for rs in by_trial.values()
            for a, b in zip(rs, rs[1:])
            if "sent_at" in a and "sent_at" in b
        ]
        if blocked:
            out["worker_blocked_per_report_s"] = _stats(blocked)
            out["report_to_driver_s"] = _stats([r["recv_at"] - r["sent_at"] for r in rows if "sent_at" in r])
        # per-trial turnaround: the k-th trial to start waits for the (k - slots)-th to end
        starts = sorted(rs[0]["t"] - rs[0]["epoch_time_s"] for rs in by_trial.values())
        ends = sorted(rs[-1]["t"] for rs in by_trial.values())
        turn = [starts[k] - ends[k - self.slots] for k in range(self.slots, len(starts)) if k - self.slots < len(ends)]
        out["per_trial_turnaround_s"] = _stats(turn)
        # same worker process: last report of one trial -> first epoch start of the next
        if all("pid" in r and "sent_at" in r for r in rows):
            by_pid: dict[int, list[list[dict[str, Any]]]] = {}
            for rs in by_trial.values():
                by_pid.setdefault(rs[0]["pid"], []).append(rs)
            same = []
            for trials in by_pid.values():
                trials.sort(key=lambda rs: rs[0]["sent_at"])
                for prev, nxt in zip(trials, trials[1:]):
                    same.append((nxt[0]["sent_at"] - nxt[0]["epoch_time_s"]) - prev[-1]["sent_at"])
            out["worker_trial_switch_s"] = _stats(same)
            out["worker_processes"] = len(by_pid)
        for name, values in self.hook_s.items():
            out[f"hook_{name}"] = {"calls": len(values), "total_s": sum(values), **_stats(values)}
        # outcomes and best
        complete = pruned = diverged = 0
        best: tuple[float, float, str] | None = None
        for trial, rs in by_trial.items():
            outcome = self.trial_outcome.get(trial)
            last = rs[-1]
            if outcome is None:
                if len(rs) >= max_epochs and _finite(last["val_loss"]):
                    outcome = "COMPLETE"
                elif not _finite(last["train_loss"]) or not _finite(last["val_loss"]):
                    outcome = "DIVERGED"
                else:
                    outcome = "PRUNED"
            if outcome == "COMPLETE":
                complete += 1
                if len(rs) >= max_epochs and _finite(last["val_loss"]):
                    if best is None or last["val_loss"] < best[0]:
                        best = (last["val_loss"], last["val_accuracy"], trial)
            else:
                pruned += 1
                diverged += outcome == "DIVERGED"
        for trial, outcome in self.trial_outcome.items():  # ended before its first report
            if trial not in by_trial and outcome in ("PRUNED", "DIVERGED", "FAIL"):
                pruned += outcome != "FAIL"
                diverged += outcome == "DIVERGED"
        out.update(complete=complete, pruned=pruned, diverged=diverged)
        out["best_val_loss"] = best[0] if best else None
        out["best_val_accuracy"] = best[1] if best else None
        out["best_trial"] = best[2] if best else None
        out.update(self.extra)
        return out


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
        "sum": sum(values),
    }


# --------------------------------------------------------------------------------------------
# Variant 1: stepsize
# --------------------------------------------------------------------------------------------
def probe_cnn(config: dict[str, Any], trial: Any) -> None:
    """The built-in digits CNN, with the worker's send time added to each report (--probe)."""
    from orchestrator.workloads.digits import _train

    report = trial.report

    def timed_report(epoch: int | None = None, **metrics: float) -> None:
        report(epoch, sent_at=time.time(), **metrics)

    trial.report = timed_report
    _train("cnn", config, trial)


def _apply_patches(names: list[str], rec: Recorder) -> None:
    for name in names:
        PATCHES[name](rec)


def _patch_async_report(rec: Recorder) -> None:
    """Searcher writes intermediate values to SQLite in a background thread, in order."""
    import queue
    import threading

    import orchestrator.searcher as searcher_mod

    cls = searcher_mod.OptunaStudySearcher
    work: "queue.Queue[Any]" = queue.Queue()

    def worker() -> None:
        while True:
            item = work.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - keep the writer alive, note the error
                rec.extra.setdefault("async_report_errors", []).append(repr(exc)[:200])
            finally:
                work.task_done()

    threading.Thread(target=worker, daemon=True).start()
    orig_report = cls._report

    def _report(self: Any, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._live.get(trial_id)
        if trial is None:
            return
        real = trial.report
        calls: list[tuple[float, int]] = []
        trial.report = lambda value, step: calls.append((value, step))  # type: ignore[method-assign]
        try:
            orig_report(self, trial_id, result)
        finally:
            trial.report = real  # type: ignore[method-assign]
        for value, step in calls:
            work.put((real, (value, step)))

    orig_tell = cls._tell

    def _tell(self: Any, *args: Any, **kwargs: Any) -> None:
        work.join()  # everything reported so far is written before the trial is told
        orig_tell(self, *args, **kwargs)

    cls._report = _report
    cls._tell = _tell


def _patch_sqlite_fast(rec: Recorder) -> None:
    """The Optuna SQLite storage in WAL mode with synchronous=NORMAL (one fsync per checkpoint,
    not per commit)."""
    from sqlalchemy import event

    import orchestrator.study as study_mod

    orig = study_mod.make_storage

    def make_storage(url: str) -> Any:
        storage = orig(url)
        if url.startswith("sqlite"):
            def _pragma(conn: Any, _record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            event.listen(storage.engine, "connect", _pragma)
            storage.engine.dispose()  # connections opened from now on get the pragmas
        return storage

    study_mod.make_storage = make_storage


def _patch_inmemory_storage(rec: Recorder) -> None:
    """Optuna InMemoryStorage instead of SQLite (upper bound of what storage costs)."""
    import optuna

    import orchestrator.study as study_mod

    storages: dict[str, Any] = {}

    def make_storage(url: str) -> Any:
        return storages.setdefault(url, optuna.storages.InMemoryStorage())

    study_mod.make_storage = make_storage  # type: ignore[assignment]


def _patch_no_experiment_checkpoint(rec: Recorder) -> None:
    """TuneController.checkpoint() does nothing (no experiment-state snapshots during the run)."""
    from ray.tune.execution.tune_controller import TuneController

    orig = TuneController.checkpoint

    def checkpoint(self: Any, force: bool = False, wait: bool = False) -> None:
        if force:
            return orig(self, force=force, wait=wait)
        return None

    TuneController.checkpoint = checkpoint


def _patch_concurrency3(rec: Recorder) -> None:
    """Run 3 concurrent trials of 1 CPU on the 2-core machine (cluster told it has 3 CPUs)."""
    import orchestrator.runner as runner

    orig = runner.ensure_ray

    def ensure_ray(address: Any, verbose: bool = False) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=3, runtime_env=runner._worker_env(), include_dashboard=False,
                     logging_level="ERROR", log_to_driver=False)
        return orig(address, verbose)

    runner.ensure_ray = ensure_ray
    rec.extra["concurrency_override"] = 3


def _patch_no_runtime_env(rec: Recorder) -> None:
    """ray.init without the runtime_env (workers inherit PYTHONPATH from the driver here)."""
    import orchestrator.runner as runner

    runner._worker_env = lambda: {}  # type: ignore[assignment]


def _patch_no_plots(rec: Recorder) -> None:
    """The end-of-study MLflow record without its plots (orchestrator.tracking.plots.make_plots)."""
    import orchestrator.tracking.plots as plots

    plots.make_plots = lambda study, metric, folder: ([], [])  # type: ignore[assignment]


def _patch_lazy_trial_flush(rec: Recorder) -> None:
    """MLflow records are written on the flusher's interval only, not as soon as a trial ends."""
    from orchestrator.tracking.recorder import StudyRecorder

    def _trial_ended(self: Any, *args: Any) -> None:
        if self._study is not None:
            self._save_parent(self._study)

    StudyRecorder._trial_ended = _trial_ended


def _patch_fix_result_buffering(rec: Recorder) -> None:
    """Ray 2.60's TuneController calls ``train_buffered(buffer_length, buffer_time_s)`` while the
    method's signature is ``train_buffered(buffer_time_s, max_buffer_length)``, so a buffer never
    holds more than one result (max_buffer_length < 1). This passes them in the right order;
    use with TUNE_RESULT_BUFFER_LENGTH > 1 and TUNE_RESULT_BUFFER_MIN_TIME_S > 0."""
    from ray.tune.execution.tune_controller import TuneController

    def _schedule_trial_train(self: Any, trial: Any) -> None:
        buffer_length, buffer_time_s = self._maybe_buffer_training(trial)
        method_name, args = "train", ()
        if buffer_length > 1:
            method_name, args = "train_buffered", (buffer_time_s, buffer_length)
        self._schedule_trial_task(trial=trial, method_name=method_name, args=args,
                                  on_result=self._on_training_result, on_error=self._trial_task_failure)

    TuneController._schedule_trial_train = _schedule_trial_train


def _patch_suggest_ahead(rec: Recorder) -> None:
    """Concurrency 3 on a 2-CPU cluster: the third trial is suggested ahead and waits, pending,
    for a slot (the searcher's ask is then off the path from one trial's end to the next start)."""
    rec.extra["concurrency_override"] = 3


PATCHES = {
    "async_report": _patch_async_report,
    "sqlite_wal": _patch_sqlite_fast,
    "inmemory_storage": _patch_inmemory_storage,
    "no_experiment_checkpoint": _patch_no_experiment_checkpoint,
    "concurrency3": _patch_concurrency3,
    "no_runtime_env": _patch_no_runtime_env,
    "suggest_ahead": _patch_suggest_ahead,
    "no_plots": _patch_no_plots,
    "fix_result_buffering": _patch_fix_result_buffering,
    "lazy_trial_flush": _patch_lazy_trial_flush,
}


def _mark_tune_stages(rec: Recorder) -> None:
    from ray import tune

    orig_fit = tune.Tuner.fit

    def fit(self: Any) -> Any:
        rec.mark("fit_start_at")
        try:
            return orig_fit(self)
        finally:
            rec.mark("fit_end_at")

    tune.Tuner.fit = fit


def run_stepsize(args: argparse.Namespace, workdir: Path, rec: Recorder) -> None:
    import orchestrator.runner as runner
    import orchestrator.searcher as searcher_mod
    from orchestrator.api import launch
    from orchestrator.spec import spec_from_mapping

    rec.mark("imports_done_at")
    _apply_patches(args.patch, rec)
    concurrency = 3 if ("concurrency3" in args.patch or "suggest_ahead" in args.patch) else 2
    rec.slots = 3 if "concurrency3" in args.patch else 2

    orig_ensure = runner.ensure_ray

    def ensure_ray(*a: Any, **k: Any) -> None:
        rec.mark("ray_init_start_at")
        started = time.perf_counter()
        orig_ensure(*a, **k)
        rec.marks["ray_init_s"] = time.perf_counter() - started

    runner.ensure_ray = ensure_ray
    _mark_tune_stages(rec)
    searcher_mod.FailureRelay.on_trial_start = lambda self, *a, **k: rec.mark("first_trial_running_at")

    cls = searcher_mod.OptunaStudySearcher
    orig_suggest, orig_result, orig_complete = cls.suggest, cls.on_trial_result, cls.on_trial_complete

    def suggest(self: Any, trial_id: str) -> Any:
        rec.mark("first_suggest_at")
        started = time.perf_counter()
        try:
            return orig_suggest(self, trial_id)
        finally:
            rec.hook_time("searcher_suggest", time.perf_counter() - started)

    def on_trial_result(self: Any, trial_id: str, result: dict[str, Any]) -> None:
        rec.result(trial_id, result["training_iteration"], result)
        started = time.perf_counter()
        orig_result(self, trial_id, result)
        rec.hook_time("searcher_on_trial_result", time.perf_counter() - started)

    def on_trial_complete(self: Any, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result and "training_iteration" in result:
            rec.result(trial_id, result["training_iteration"], result)
        rec.trial_end[trial_id] = time.perf_counter()
        started = time.perf_counter()
        orig_complete(self, trial_id, result, error)
        rec.hook_time("searcher_on_trial_complete", time.perf_counter() - started)

    cls.suggest, cls.on_trial_result, cls.on_trial_complete = suggest, on_trial_result, on_trial_complete

    spec = spec_from_mapping({
        "name": "digits_overhead",
        "workload": "bench.digits_overhead:probe_cnn" if args.probe else "digits_cnn",
        "search_space": "default",
        "objective": {"metric": METRIC, "mode": "min"},
        "sampler": {"name": "tpe", "multivariate": True},  # as the other two arms
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
        "budget": {"trials": args.trials, "max_epochs": args.max_epochs},
        "concurrency": concurrency,
        "resources": {"cpus": 1, "gpu": 0},
        "storage": f"sqlite:///{workdir / 'stepsize.db'}",
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "results_dir": str(workdir / "results"),
        "seed": args.seed,
    })
    summary = launch(spec, quiet=True)
    rec.end()

    # Outcomes as stepsize told them to Optuna (trial numbers -> Ray trial ids).
    import optuna

    from orchestrator.study import make_storage

    study = optuna.load_study(study_name=spec.name, storage=make_storage(spec.storage))
    for t in study.get_trials(deepcopy=False):
        rid = t.user_attrs.get("ray_trial_id")
        if rid is None:
            continue
        state = t.state.name
        rec.trial_outcome[rid] = "DIVERGED" if t.user_attrs.get("diverged") else state
    rec.extra["optuna_states"] = dict(summary.counts)
    rec.extra["summary_best_value"] = summary.best_value
    rec.extra["summary_best_metrics"] = summary.best_metrics

    import ray

    started = time.perf_counter()
    ray.shutdown()
    rec.extra["ray_shutdown_s"] = time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Variant 2: plain Optuna, one process
# --------------------------------------------------------------------------------------------
def run_optuna(args: argparse.Namespace, workdir: Path, rec: Recorder) -> None:
    import optuna
    import torch  # noqa: F401  (threads left at torch's default)

    from orchestrator.context import TrialContext
    from orchestrator.divergence import DivergenceGuard, TrialDiverged
    from orchestrator.spec import spec_from_mapping
    from orchestrator.workloads.digits import _train, load_digits_split

    rec.mark("imports_done_at")
    if args.child == "optuna_1t":
        torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spec_from_mapping({"name": "x", "search_space": "default"}).search_space
    load_digits_split(0)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=args.seed, multivariate=True),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    rec.extra["torch_threads"] = torch.get_num_threads()

    def objective(trial: optuna.Trial) -> float:
        rec.marks.setdefault("first_trial_start", time.perf_counter())
        config = space.suggest(trial)
        last: dict[str, Any] = {}

        def sink(metrics: dict[str, Any]) -> None:
            last.clear()
            last.update(metrics)
            epoch = int(metrics["epoch"])
            rec.result(str(trial.number), epoch, {**metrics, "batch_size": config["batch_size"]})
            trial.report(float(metrics[METRIC]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        context = TrialContext(
            number=trial.number,
            max_epochs=args.max_epochs,
            seed=args.seed + trial.number,
            _sink=sink,
            guard=DivergenceGuard(loss_factor=4.0),
        )
        try:
            _train("cnn", config, context)
        except TrialDiverged:
            rec.trial_outcome[str(trial.number)] = "DIVERGED"
            raise optuna.TrialPruned()
        except optuna.TrialPruned:
            rec.trial_outcome[str(trial.number)] = "PRUNED"
            raise
        if context.epoch < args.max_epochs:  # the workload returned early (non-finite loss)
            rec.trial_outcome[str(trial.number)] = "DIVERGED"
            raise optuna.TrialPruned()
        rec.trial_outcome[str(trial.number)] = "COMPLETE"
        return float(last[METRIC])

    study.optimize(objective, n_trials=args.trials)
    rec.end()
    rec.extra["optuna_states"] = {
        s: sum(1 for t in study.trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL")
    }


# --------------------------------------------------------------------------------------------
# Variant 3: stock Ray Tune
# --------------------------------------------------------------------------------------------
def stock_trainable(config: dict[str, Any]) -> None:
    """What a Ray Tune user would write: load data, build the model, train, report each epoch."""
    import numpy as np
    import torch
    from ray import tune
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch import nn

    from orchestrator.workloads.digits import build_model

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_tr, y_tr, x_val, y_val = map(torch.from_numpy, (x_tr, y_tr, x_val, y_val))
    torch.manual_seed(config["seed"])
    model = build_model("cnn", {})
    optimizer = torch.optim.SGD(model.parameters(), lr=config["learning_rate"], momentum=config["momentum"])
    loss_fn = nn.CrossEntropyLoss()
    batch_size = int(config["batch_size"])
    generator = torch.Generator().manual_seed(config["seed"])
    n = x_tr.shape[0]
    for _ in range(config["max_epochs"]):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        total, seen = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        train_loss = total / seen
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = loss_fn(logits, y_val).item()
            val_accuracy = (logits.argmax(1) == y_val).float().mean().item()
        tune.report({
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": config["learning_rate"],
            "epoch_time_s": time.perf_counter() - started,
            "sent_at": time.time(),
        })
        if not math.isfinite(train_loss):
            return


def _timeline_callback(rec: Recorder) -> Any:
    """A Tune callback feeding ``rec``. The Tuner pickles its callbacks (and cloudpickle copies
    classes defined in ``__main__`` by value), so the recorder is looked up, not captured."""
    from ray import tune

    global RECORDER
    RECORDER = rec

    def current() -> Recorder:
        return getattr(sys.modules["__main__"], "RECORDER")

    class Timeline(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            current().result(trial.trial_id, result["training_iteration"], result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            current().trial_end[trial.trial_id] = time.perf_counter()

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            current().mark("first_trial_running_at")

    return Timeline()


RECORDER: Recorder | None = None


def run_raytune(args: argparse.Namespace, workdir: Path, rec: Recorder) -> None:
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    rec.mark("imports_done_at")
    rec.mark("ray_init_start_at")
    started = time.perf_counter()
    ray.init()
    rec.marks["ray_init_s"] = time.perf_counter() - started

    searcher = OptunaSearch(
        metric=METRIC,
        mode="min",
        sampler=optuna.samplers.TPESampler(seed=args.seed, multivariate=True, constant_liar=True),
    )
    tuner = tune.Tuner(
        tune.with_resources(stock_trainable, {"cpu": 1}),
        param_space={
            "learning_rate": tune.loguniform(1e-4, 1.0),
            "batch_size": tune.choice([16, 32, 64, 128, 256]),
            "momentum": tune.uniform(0.5, 0.99),
            "max_epochs": args.max_epochs,
            "seed": args.seed,
        },
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=ASHAScheduler(metric=METRIC, mode="min", grace_period=1, reduction_factor=3, max_t=args.max_epochs),
            num_samples=args.trials,
            max_concurrent_trials=2,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(workdir / "ray_results"), verbose=0, callbacks=[_timeline_callback(rec)]),
    )
    rec.mark("fit_start_at")
    grid = tuner.fit()
    rec.mark("fit_end_at")
    rec.end()
    rec.extra["ray_errors"] = len(grid.errors)
    started = time.perf_counter()
    ray.shutdown()
    rec.extra["ray_shutdown_s"] = time.perf_counter() - started


RUNNERS = {"stepsize": run_stepsize, "optuna": run_optuna, "raytune": run_raytune, "optuna_1t": run_optuna}


def child_main(args: argparse.Namespace) -> None:
    global SAMPLER
    SAMPLER = TreeSampler()
    workdir = Path(args.workdir)
    rec = Recorder(slots=1 if args.child.startswith("optuna") else 2)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        RUNNERS[args.child](args, workdir, rec)
    finally:
        if profiler is not None:
            profiler.disable()
    out = rec.summary(args.max_epochs)
    out["variant"] = args.child
    if profiler is not None:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(45)
        out["profile"] = buf.getvalue()
    if args.dump_results:
        out["results"] = rec.results
    Path(args.child_out).write_text(json.dumps(out, indent=1, default=str))


# --------------------------------------------------------------------------------------------
# Parent: run the variants one after the other, each in its own subprocess
# --------------------------------------------------------------------------------------------
def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_orphans(wait_s: float) -> list[int]:
    """Reap descendants left behind (reparented to us); return pids still alive after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return []
        alive = [pid for pid, (ppid, _) in _read_proc_stats().items() if ppid == os.getpid()]
        if not alive:
            return []
        if time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def run_variant(name: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench_{name}_") as tmp:
        child_out = Path(tmp) / "out.json"
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--child", name, "--child-out", str(child_out),
            "--workdir", tmp, "--trials", str(args.trials), "--max-epochs", str(args.max_epochs),
            "--seed", str(args.seed),
        ]
        if name == "stepsize":
            for patch in args.patch:
                cmd += ["--patch", patch]
            if args.probe:
                cmd.append("--probe")
        if args.profile:
            cmd.append("--profile")
        if args.dump_results:
            cmd.append("--dump-results")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        for item in args.env:
            key, _, value = item.partition("=")
            env[key] = value
        log_path = log_dir / f"{name}.log"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout,
                                  preexec_fn=(lambda: os.nice(args.nice)) if args.nice else None)
        wall = time.perf_counter() - started
        left = _reap_orphans(30.0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0 or not child_out.is_file():
            tail = log_path.read_text()[-3000:]
            raise RuntimeError(f"variant {name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
        out = json.loads(child_out.read_text())
    out["subprocess_wall_s"] = wall
    out["subprocess_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["subprocess_cpu_util"] = out["subprocess_cpu_s"] / wall / CORES
    out["left_running"] = left
    out["log"] = str(log_path)
    return out


def wait_for_quiet(max_wait_s: float, threshold: float = 0.15, window_s: float = 3.0) -> float:
    """Wait (up to ``max_wait_s``) until the machine's busy share over ``window_s`` is below
    ``threshold``; return the last busy share seen. Other work on a 2-core machine skews timings."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = system_busy_s()
        time.sleep(window_s)
        b1, t1 = system_busy_s()
        busy = (b1 - b0) / max(1e-9, t1 - t0)
        if busy < threshold or time.monotonic() > deadline:
            return busy


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["wall_after_startup_s"])
    return ordered[(len(ordered) - 1) // 2]


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| variant | start-up s (ray.init s) | wall after start-up s | epochs | wall per epoch s | "
        "epoch compute s (median epoch s) | compute floor s | overhead s | CPU util after start-up | "
        "other load (cores) | COMPLETE / PRUNED (diverged) | best val_loss | best val_accuracy |",
        "|" + "---|" * 13,
    ]
    for name, runs in results.items():
        r = _median_run(runs)
        init = r.get("ray_init_s")
        startup = _fmt(r["startup_s"]) + (f" ({init:.1f})" if init is not None else "")
        walls = ", ".join(f"{x['wall_after_startup_s']:.1f}" for x in runs)
        wall = _fmt(r["wall_after_startup_s"]) + (f" [{walls}]" if len(runs) > 1 else "")
        util = r.get("cpu_util")
        lines.append(
            f"| {name} | {startup} | {wall} | {r['epochs']} | {r['wall_per_epoch_s']:.3f} | "
            f"{r['epoch_compute_s']:.1f} ({r['epoch_time_median_s']:.3f}) | "
            f"{r['epoch_compute_s'] / r['slots']:.1f} | {r['wall_after_startup_s'] - r['epoch_compute_s'] / r['slots']:.1f} | "
            f"{'-' if util is None else f'{100 * util:.0f}%'} | {_fmt(r.get('other_load_cores'), 2)} | "
            f"{r['complete']} / {r['pruned']} ({r['diverged']}) | {_fmt(r['best_val_loss'], 4)} | "
            f"{_fmt(r['best_val_accuracy'], 4)} |"
        )
    return "\n".join(lines)


def overhead_table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| variant | slots | idle slot-s per epoch | per-result gap median / mean s | "
        "per-trial turnaround median s | after fit returned s | "
        "start-up: imports / ray.init / to first trial running / to first epoch s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        r = _median_run(runs)
        gap, turn = r["per_result_gap_s"], r["per_trial_turnaround_s"]
        stages = []
        for key in ("imports_done_at", "ray_init_start_at", "first_trial_running_at"):
            stages.append(r.get(key))
        imports = stages[0]
        init = r.get("ray_init_s")
        running = stages[2]
        lines.append(
            f"| {name} | {r['slots']} | {r['idle_slot_s_per_epoch']:.3f} | "
            f"{_fmt(gap.get('median'), 3)} / {_fmt(gap.get('mean'), 3)} | {_fmt(turn.get('median'), 3)} | "
            f"{_fmt(r.get('after_fit_s'))} | {_fmt(imports)} / {_fmt(init)} / {_fmt(running)} / {_fmt(r['startup_s'])} |"
        )
    return "\n".join(lines)


def parent_main(args: argparse.Namespace) -> None:
    if args.quick:
        args.trials, args.max_epochs = 6, 4
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in names:
        if name not in VARIANTS + EXTRA_VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS + EXTRA_VARIANTS)}")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out_path.parent / (out_path.stem + "_logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    subreaper = _become_subreaper()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(args.repeat):
        for name in names:
            busy = wait_for_quiet(args.wait_idle) if args.wait_idle > 0 else None
            print(f"[{round_ + 1}/{args.repeat}] {name} ({args.trials} trials x {args.max_epochs} epochs; "
                  f"machine busy before: {'-' if busy is None else f'{100 * busy:.0f}%'}) ...", file=sys.stderr, flush=True)
            r = run_variant(name, args, log_dir)
            r["busy_before"] = busy
            results[name].append(r)
            print(f"  start-up {r['startup_s']:.1f}s, after start-up {r['wall_after_startup_s']:.1f}s, "
                  f"{r['epochs']} epochs, other load {_fmt(r.get('other_load_cores'), 2)} cores",
                  file=sys.stderr, flush=True)
    ratios: dict[str, float] = {}
    if "stepsize" in results:
        mine = _median_run(results["stepsize"])
        for other, target in (("optuna", 0.75), ("raytune", 0.25), ("optuna_1t", None)):
            if other in results:
                theirs = _median_run(results[other])
                ratios[f"stepsize/{other}"] = mine["wall_after_startup_s"] / theirs["wall_after_startup_s"]
                ratios[f"stepsize/{other}_per_epoch"] = mine["wall_per_epoch_s"] / theirs["wall_per_epoch_s"]
                ratios[f"stepsize/{other}_total"] = mine["total_s"] / theirs["total_s"]
                if target is not None:
                    ratios[f"stepsize/{other}_target"] = target
    payload = {
        "machine": {"cores": CORES, "gpu": None, "python": sys.version.split()[0], "platform": sys.platform},
        "settings": {
            "trials": args.trials, "max_epochs": args.max_epochs, "seed": args.seed, "quick": args.quick,
            "env": args.env, "patch": args.patch, "probe": args.probe, "subreaper": subreaper,
            "repeat": args.repeat, "wait_idle": args.wait_idle, "nice": args.nice,
        },
        "results": {name: (runs[0] if len(runs) == 1 else {"median": _median_run(runs), "runs": runs})
                    for name, runs in results.items()},
        "ratios": ratios,
        "versions": _versions(),
        "git": _git_state(),
    }
    out_path.write_text(json.dumps(payload, indent=1, default=str))
    print(table(results))
    print()
    print(overhead_table(results))
    if ratios:
        print()
        for other in ("optuna", "raytune", "optuna_1t"):
            key = f"stepsize/{other}"
            if key not in ratios:
                continue
            target = ratios.get(key + "_target")
            verdict = "" if target is None else f" (target <= {target}x: {'meets' if ratios[key] <= target else 'misses'})"
            print(f"{key}: wall after start-up {ratios[key]:.2f}x{verdict}; per epoch "
                  f"{ratios[key + '_per_epoch']:.2f}x; total incl. start-up {ratios[key + '_total']:.2f}x")
    print(f"\nJSON: {out_path}")


def _git_state() -> dict[str, Any]:
    """The commit measured and whether the working tree had changes (read-only git calls)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--short", "--untracked-files=no").splitlines()}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ray", "optuna", "torch", "scikit-learn", "stepsize"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="6 trials x 4 epochs, a smoke test")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "digits_overhead.json"))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, from " + ", ".join(VARIANTS + EXTRA_VARIANTS))
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in every subprocess")
    parser.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES), help="stepsize only")
    parser.add_argument("--probe", action="store_true", help="stepsize: workload adds send times (latency)")
    parser.add_argument("--profile", action="store_true", help="cProfile each subprocess's main thread")
    parser.add_argument("--dump-results", action="store_true", help="keep every result row in the JSON")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per variant, seconds")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness increment for the variants' processes (Ray's inherit it); a negative "
                             "value (root only) shields the measurement from other work on a shared machine")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all variants; the median run is shown")
    parser.add_argument("--wait-idle", type=float, default=120.0, metavar="S",
                        help="before each variant wait up to S seconds for the machine to be idle (0: do not wait)")
    parser.add_argument("--child", choices=VARIANTS + EXTRA_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
