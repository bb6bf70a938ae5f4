"""Orchestration overhead on the digits CNN study: stepsize vs plain Optuna vs stock Ray Tune.

The same study (digits CNN, the ``default`` search space, TPE with one seed, successive-halving
early stopping at epochs 1, 3, 9 with reduction factor 3, at most ``--max-epochs`` epochs a trial)
is run three ways, one after the other, each in a fresh Python subprocess:

* ``stepsize``  -- ``orchestrator.api.launch`` (Optuna TPE -> stepsize's Tune searcher -> ASHA),
  2 concurrent trials of 1 CPU, fresh SQLite storage, MLflow store and results folder in a temp
  dir. The workload is the built-in digits CNN (``orchestrator.workloads.digits.train_cnn``)
  through ``bench/overhead/timeline.py``, which writes down when each epoch is reported.
* ``optuna``    -- plain Optuna in one process: TPESampler(seed, multivariate) +
  SuccessiveHalvingPruner(min_resource=1, reduction_factor=3), ``study.optimize``; the objective
  runs stepsize's own training code (the ``digits_cnn`` workload, through
  ``orchestrator.trial.runner.run_trial`` as a trial runs it) and sends each epoch to
  ``trial.report`` / ``trial.should_prune``.
* ``raytune``   -- stock Ray Tune: ``tune.Tuner`` + ``OptunaSearch`` + ``ASHAScheduler``,
  ``reuse_actors=True``, 2 concurrent trials of 1 CPU, a plain function trainable that loads the
  data itself and calls ``tune.report`` every epoch; default RunConfig otherwise.

Every arm is timed from outside stepsize: the wall clock around public calls and the moment each
epoch is reported by the workload (for the Ray arms in the worker; Ray workers run on this machine,
so their clock is this process's). t0 is the first statement of the subprocess, before any heavy
import. Measured per variant:

* start-up: t0 until the first epoch of the first trial starts (that epoch's report time minus its
  own training time, ``epoch_time_s``). For the Ray arms it holds imports, study creation,
  ``ray.init`` (also shown on its own: stepsize's arm calls the public ``ensure_ray`` before
  ``launch``, which then finds Ray running), worker start, actor creation and the first trial's
  set-up. For plain Optuna it is t0 until the objective is first entered (imports, data load,
  study creation).
* wall after start-up: end of the study (``launch`` / ``fit`` / ``optimize`` returned) minus
  the end of start-up. ``ray.shutdown`` is not in it (shown separately).
* CPU utilisation: CPU seconds of the subprocess and all its descendants (Ray's gcs_server,
  raylet, workers... are descendants of the driver) from the first epoch's report to the end,
  divided by that window and the number of cores. Read from /proc/<pid>/stat
  (utime+stime+cutime+cstime) of every process in the tree, sampled every 0.25 s by a thread in the
  subprocess, keeping each process's last value (a process that ends mid-window loses at most
  0.25 s; the window's start falls between two samples and is interpolated). The machine-wide busy
  share over the same window (/proc/stat) is reported too. The parent also records
  RUSAGE_CHILDREN for the whole subprocess in the JSON (it makes itself a child subreaper so
  orphaned Ray processes are reaped by it); for the Ray runs it undercounts (processes killed at
  shutdown are not all reaped through the chain), so the /proc figure is the one reported.
* epochs trained (sum over trials), the sum of per-epoch training time the workload measured
  (``epoch_time_s``); the compute floor (that sum / concurrent slots: the wall time a runner with
  no overhead would need) and the overhead (wall after start-up - floor); trials COMPLETE / PRUNED
  (diverged trials are counted as PRUNED, as stepsize tells them, and also shown separately), and
  the best trial's final val_loss / val_accuracy (among trials that trained all epochs).
* the overhead's parts seen from the workload: the per-result gap (between two reports of one
  trial, beyond the epoch's training: the time a worker waits for the driver), the trial switch
  (a worker's last report of one trial to its first epoch of the next) and the time after the last
  result until the study's call returned (for stepsize: the end-of-study record).

Usage (from the repository root)::

    .venv/bin/python -m bench.overhead.digits_overhead --quick
    .venv/bin/python -m bench.overhead.digits_overhead                 # 40 trials x 20 epochs
    .venv/bin/python -m bench.overhead.digits_overhead --variants stepsize --env TUNE_GLOBAL_CHECKPOINT_S=1000

On a machine shared with other work use ``--nice -20`` (root; the variants' processes, and Ray's
workers, which Ray starts 15 niceness steps below the driver, get priority) and ``--wait-idle``
(wait for an idle machine before each variant); the "other load" column shows CPU used outside
the measured process tree. ``--repeat N`` runs N rounds and shows the median run.

Investigation options (not needed for the comparison): ``--env KEY=VALUE`` sets an environment
variable in the subprocesses, ``--profile`` runs the subprocess under cProfile and keeps the top
functions, ``--dump-results`` keeps every result row. ``--variants optuna_1t`` adds plain Optuna
with torch limited to one thread.

Dropped (stepsize's public API only, no monkeypatching): ``--patch NAME``, which monkeypatched the
searcher, the runner, the MLflow recorder and Tune's controller to try candidate changes, and
``--probe``; the searcher-hook times and the ``fit`` boundaries they measured are gone with them
(the per-result gap is now always taken from the workload's report times, as ``--probe`` did).
Those investigations' results stay recorded in ``bench/overhead/results/digits_overhead_changes.json``
and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()
_WALL0 = time.time()

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import (  # noqa: E402
    CLK_TCK,
    CORES,
    StopTrial,
    describe,
    git_state,
    machine_info,
    results_file,
    run_module,
    system_busy_s,
    temp_study,
    train_workload,
    versions,
    wait_for_quiet,
    write_json,
)

VARIANTS = ("stepsize", "optuna", "raytune")
EXTRA_VARIANTS = ("optuna_1t",)  # plain Optuna with torch limited to 1 thread (a sensitivity check)
METRIC = "val_loss"
MODULE = "bench.overhead.digits_overhead"  # each variant runs as ``python -m MODULE --child NAME``


def local_time(wall: float) -> float:
    """A wall-clock time (``time.time()``, e.g. from a Ray worker on this machine) on this
    process's ``perf_counter`` scale."""
    return wall - _WALL0 + _T0


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


class TreeSampler:
    """Samples the process tree's CPU every ``interval`` s in a background thread.

    Ray stops trial actors (and may end idle workers) before ``fit`` returns, so a snapshot at
    the end alone would lose their CPU time; the last value seen for each process is kept (a
    process that ends loses at most ``interval`` s of CPU). ``history`` holds, per sample, the
    time, the tree's CPU so far, the machine's busy and total CPU and the processes seen, so a
    window can be chosen afterwards (:meth:`at`).
    """

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.last: dict[int, float] = {}
        self.history: list[tuple[float, float, float, float, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tree-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        now = tree_cpu()
        busy, total = system_busy_s()
        with self._lock:
            self.last.update(now)
            self.history.append((time.perf_counter(), sum(self.last.values()), busy, total, len(self.last)))

    def at(self, t: float) -> dict[str, float]:
        """The sampled counters at time ``t``, interpolated between the samples around it."""
        with self._lock:
            history = list(self.history)
        before = [h for h in history if h[0] <= t] or history[:1]
        after = [h for h in history if h[0] > t] or history[-1:]
        a, b = before[-1], after[0]
        share = 0.0 if b[0] <= a[0] else (t - a[0]) / (b[0] - a[0])
        tree, busy, total = (a[i] + share * (b[i] - a[i]) for i in (1, 2, 3))
        return {"t": t, "tree_cpu_s": tree, "sys_busy_s": busy, "sys_total_s": total, "procs": b[4]}

    def stop(self) -> None:
        self._stop.set()


SAMPLER: TreeSampler | None = None


# --------------------------------------------------------------------------------------------
# What each subprocess records
# --------------------------------------------------------------------------------------------
class Recorder:
    """Each epoch's report with its time on this process's perf_counter scale; turned into the metrics."""

    def __init__(self, slots: int):
        self.slots = slots
        self.results: list[dict[str, Any]] = []  # one per (trial, epoch), first report wins
        self._seen: set[tuple[str, int]] = set()
        self.trial_outcome: dict[str, str] = {}
        self.marks: dict[str, float] = {}
        self.extra: dict[str, Any] = {}

    def mark(self, name: str, at: float | None = None) -> None:
        """Record the first time ``name`` happens (now, or ``at``)."""
        self.marks.setdefault(name, time.perf_counter() if at is None else at)

    def result(self, trial: str, epoch: int, metrics: dict[str, Any], at: float) -> None:
        key = (str(trial), int(epoch))
        if key in self._seen:
            return
        self._seen.add(key)
        row = {
            "trial": str(trial),
            "epoch": int(epoch),
            "t": at,
            "epoch_time_s": float(metrics.get("epoch_time_s", 0.0)),
            "val_loss": _num(metrics.get("val_loss")),
            "val_accuracy": _num(metrics.get("val_accuracy")),
            "train_loss": _num(metrics.get("train_loss")),
        }
        if "pid" in metrics:
            row["pid"] = int(metrics["pid"])
        config = metrics.get("config") if isinstance(metrics.get("config"), dict) else {}
        batch = metrics.get("batch_size", metrics.get("config/batch_size", config.get("batch_size")))
        if batch is not None:
            row["batch_size"] = int(batch)
        self.results.append(row)

    def end(self) -> None:
        self.marks["end"] = time.perf_counter()
        if SAMPLER is not None:
            SAMPLER.sample()

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
            "after_last_result_s": end - rows[-1]["t"],  # e.g. stepsize's end-of-study record
        }
        for key, value in self.marks.items():
            if key.endswith("_at"):
                out[key] = value - _T0  # a point in time, as seconds since the subprocess began
            elif key not in ("end", "first_trial_start"):
                out[key] = value
        if SAMPLER is not None:
            a, b = SAMPLER.at(first["t"]), SAMPLER.at(end)
            window = b["t"] - a["t"]
            out["cpu_window_s"] = window
            out["cpu_tree_s"] = b["tree_cpu_s"] - a["tree_cpu_s"]
            out["cpu_util"] = out["cpu_tree_s"] / window / CORES if window > 0 else None
            sys_busy = b["sys_busy_s"] - a["sys_busy_s"]
            out["sys_util"] = sys_busy / max(1e-9, b["sys_total_s"] - a["sys_total_s"])
            # CPU used on the machine by processes outside this variant's tree (other work)
            out["other_load_cores"] = max(0.0, sys_busy - out["cpu_tree_s"]) / window if window > 0 else None
            out["procs_seen"] = b["procs"]
        # per-result gap: time between two consecutive reports of one trial beyond the epoch
        gaps = [(b["t"] - a["t"]) - b["epoch_time_s"] for rs in by_trial.values() for a, b in zip(rs, rs[1:])]
        out["per_result_gap_s"] = describe(gaps)
        by_batch: dict[int, list[float]] = {}
        for r in rows:
            if "batch_size" in r:
                by_batch.setdefault(r["batch_size"], []).append(r["epoch_time_s"])
        out["epoch_time_by_batch_size"] = {
            str(k): {"epochs": len(v), "median_s": statistics.median(v)} for k, v in sorted(by_batch.items())
        }
        # per-trial turnaround: the k-th trial to start waits for the (k - slots)-th to end
        starts = sorted(rs[0]["t"] - rs[0]["epoch_time_s"] for rs in by_trial.values())
        ends = sorted(rs[-1]["t"] for rs in by_trial.values())
        turn = [starts[k] - ends[k - self.slots] for k in range(self.slots, len(starts)) if k - self.slots < len(ends)]
        out["per_trial_turnaround_s"] = describe(turn)
        # same worker process: last report of one trial -> first epoch start of the next
        if all("pid" in r for r in rows):
            by_pid: dict[int, list[list[dict[str, Any]]]] = {}
            for rs in by_trial.values():
                by_pid.setdefault(rs[0]["pid"], []).append(rs)
            same = []
            for trials in by_pid.values():
                trials.sort(key=lambda rs: rs[0]["t"])
                for prev, nxt in zip(trials, trials[1:]):
                    same.append((nxt[0]["t"] - nxt[0]["epoch_time_s"]) - prev[-1]["t"])
            out["worker_trial_switch_s"] = describe(same)
            out["worker_processes"] = len(by_pid)
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


# --------------------------------------------------------------------------------------------
# Variant 1: stepsize
# --------------------------------------------------------------------------------------------
def run_stepsize(args: argparse.Namespace, workdir: Path, rec: Recorder) -> None:
    from orchestrator.api import launch
    from orchestrator.keys import TrialAttr
    from orchestrator.run.ray_session import apply_tune_settings, ensure_ray
    from orchestrator.study.storage import load_study

    apply_tune_settings()  # before Ray Tune is imported, as launch does
    import ray
    from ray import tune  # noqa: F401 - imported here, as by the stock Ray Tune arm, not inside ray.init's time

    rec.mark("imports_done_at")
    timeline = workdir / "timeline"
    timeline.mkdir()
    spec = temp_study(
        "digits_overhead", workdir,
        workload="bench.overhead.timeline:digits_cnn",  # the built-in digits_cnn, its reports timed
        workload_options={"timeline": str(timeline)},
        search_space="default",
        objective={"metric": METRIC, "mode": "min"},
        sampler={"name": "tpe", "multivariate": True},  # as the other two arms
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3},
        budget={"trials": args.trials, "max_epochs": args.max_epochs},
        concurrency=2,
        resources={"cpus": 1, "gpu": 0},
        seed=args.seed,
    )
    rec.mark("ray_init_start_at")
    started = time.perf_counter()
    ensure_ray(spec.address)  # as launch would; launch then finds Ray running
    rec.marks["ray_init_s"] = time.perf_counter() - started
    summary = launch(spec, quiet=True)
    rec.end()

    for path in sorted(timeline.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "entered" in row:
                at = local_time(row["entered"])
                rec.marks["first_trial_running_at"] = min(rec.marks.get("first_trial_running_at", at), at)
            else:
                rec.result(str(row["trial"]), row["epoch"], row, local_time(row["t"]))
    # Outcomes as stepsize told them to Optuna.
    study, _ = load_study(spec.name, spec.storage)
    for t in study.get_trials(deepcopy=False):
        rec.trial_outcome[str(t.number)] = "DIVERGED" if t.user_attrs.get(TrialAttr.DIVERGED) else t.state.name
    rec.extra["optuna_states"] = dict(summary.counts)
    rec.extra["summary_best_value"] = summary.best_value
    rec.extra["summary_best_metrics"] = summary.best_metrics
    started = time.perf_counter()
    ray.shutdown()
    rec.extra["ray_shutdown_s"] = time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Variant 2: plain Optuna, one process
# --------------------------------------------------------------------------------------------
def run_optuna(args: argparse.Namespace, workdir: Path, rec: Recorder) -> None:
    import optuna
    import torch

    from orchestrator.keys import Result
    from orchestrator.spec import spec_from_mapping
    from orchestrator.workloads.digits import load_digits_split

    rec.mark("imports_done_at")
    threads = 1 if args.child == "optuna_1t" else torch.get_num_threads()  # else torch's default
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spec_from_mapping({"name": "x", "search_space": "default"}).search_space
    load_digits_split(0)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=args.seed, multivariate=True),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    rec.extra["torch_threads"] = threads
    pid = os.getpid()

    def objective(trial: optuna.Trial) -> float:
        rec.mark("first_trial_start")
        config = space.suggest(trial)
        number = str(trial.number)

        def on_epoch(metrics: dict[str, Any]) -> None:
            if metrics.get(Result.DIVERGED):  # the trial runner's record of a diverged trial
                rec.trial_outcome[number] = "DIVERGED"
                raise optuna.TrialPruned()
            epoch = int(metrics[Result.EPOCH])
            rec.result(number, epoch, {**metrics, "batch_size": config["batch_size"], "pid": pid}, time.perf_counter())
            trial.report(float(metrics[METRIC]), epoch)
            if trial.should_prune():
                raise StopTrial()

        try:
            epochs = train_workload("digits_cnn", config, epochs=args.max_epochs, seed=args.seed, threads=threads,
                                    on_epoch=on_epoch, divergence_factor=4.0, number=trial.number)
        except StopTrial:
            rec.trial_outcome[number] = "PRUNED"
            raise optuna.TrialPruned() from None
        if len(epochs) < args.max_epochs:  # the workload returned early (non-finite loss)
            rec.trial_outcome[number] = "DIVERGED"
            raise optuna.TrialPruned()
        rec.trial_outcome[number] = "COMPLETE"
        return float(epochs[-1][METRIC])

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
    entered = time.time()
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
            "entered_at": entered,
            "sent_at": time.time(),
        })
        if not math.isfinite(train_loss):
            return


def _timeline_callback(rec: Recorder) -> Any:
    """A Tune callback feeding ``rec`` with each result's report time. The Tuner pickles its
    callbacks (and cloudpickle copies classes defined in ``__main__`` by value), so the recorder
    is looked up, not captured."""
    from ray import tune

    global RECORDER
    RECORDER = rec

    def current() -> Recorder:
        return getattr(sys.modules["__main__"], "RECORDER")

    class Timeline(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            rec = current()
            entered = local_time(result["entered_at"])
            rec.marks["first_trial_running_at"] = min(rec.marks.get("first_trial_running_at", entered), entered)
            rec.result(trial.trial_id, result["training_iteration"], result, local_time(result["sent_at"]))

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
    grid = tuner.fit()
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


def add_child_options(parser: argparse.ArgumentParser, unit: str, names: tuple[str, ...], *, timeout: float,
                      wait_idle: float) -> None:
    """The options of a benchmark that runs each ``unit`` (variant, arm) in a child process of its own."""
    parser.add_argument("--profile", action="store_true", help=f"cProfile each {unit}'s driver main thread")
    parser.add_argument("--dump-results", action="store_true", help="keep every result row in the JSON")
    parser.add_argument("--timeout", type=float, default=timeout, help=f"per {unit}, seconds")
    parser.add_argument("--nice", type=int, default=0,
                        help=f"niceness increment for the {unit}s' processes (Ray's inherit it); a negative "
                             "value (root only) shields the measurement from other work on a shared machine")
    parser.add_argument("--wait-idle", type=float, default=wait_idle, metavar="S",
                        help=f"before each {unit} wait up to S seconds for the machine to be idle (0: do not wait)")
    parser.add_argument("--child", choices=names, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)


def run_child(module: str, command: list[str], *, what: str, log_path: Path, child_out: Path,
              env: dict[str, str] | None = None, nice: int = 0, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python -m module command`` (``run_module``), reap what it left behind, and return the
    JSON it wrote to ``child_out`` with its wall and CPU seconds, the pids still alive after 30 s
    (``left_running``) and its log's path; a failed child raises with ``what`` and its log's tail."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = run_module(module, command, log=log_path, env=env, nice=nice, timeout=timeout)
    wall = time.perf_counter() - started
    left = _reap_orphans(30.0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or not child_out.is_file():
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    out = json.loads(child_out.read_text())
    out["subprocess_wall_s"] = wall
    out["subprocess_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["left_running"] = left
    out["log"] = str(log_path)
    return out


def run_variant(name: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench_{name}_") as tmp:
        child_out = Path(tmp) / "out.json"
        command = [
            "--child", name, "--child-out", str(child_out), "--workdir", tmp, "--trials", str(args.trials),
            "--max-epochs", str(args.max_epochs), "--seed", str(args.seed),
        ]
        if args.profile:
            command.append("--profile")
        if args.dump_results:
            command.append("--dump-results")
        env = dict(os.environ)
        for item in args.env:
            key, _, value = item.partition("=")
            env[key] = value
        out = run_child(MODULE, command, what=f"variant {name}", log_path=log_dir / f"{name}.log",
                        child_out=child_out, env=env, nice=args.nice, timeout=args.timeout)
    out["subprocess_cpu_util"] = out["subprocess_cpu_s"] / out["subprocess_wall_s"] / CORES
    return out


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
            f"{r['compute_floor_s']:.1f} | {r['overhead_s']:.1f} | "
            f"{'-' if util is None else f'{100 * util:.0f}%'} | {_fmt(r.get('other_load_cores'), 2)} | "
            f"{r['complete']} / {r['pruned']} ({r['diverged']}) | {_fmt(r['best_val_loss'], 4)} | "
            f"{_fmt(r['best_val_accuracy'], 4)} |"
        )
    return "\n".join(lines)


def overhead_table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| variant | slots | idle slot-s per epoch | per-result gap median / mean s | trial switch median s | "
        "per-trial turnaround median s | after the last result s | "
        "start-up: imports / ray.init / to first trial running / to first epoch s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        r = _median_run(runs)
        gap, turn = r["per_result_gap_s"], r["per_trial_turnaround_s"]
        switch = r.get("worker_trial_switch_s", {})
        lines.append(
            f"| {name} | {r['slots']} | {r['idle_slot_s_per_epoch']:.3f} | "
            f"{_fmt(gap.get('median'), 3)} / {_fmt(gap.get('mean'), 3)} | {_fmt(switch.get('median'), 3)} | "
            f"{_fmt(turn.get('median'), 3)} | {_fmt(r.get('after_last_result_s'))} | "
            f"{_fmt(r.get('imports_done_at'))} / {_fmt(r.get('ray_init_s'))} / {_fmt(r.get('first_trial_running_at'))} / "
            f"{_fmt(r['startup_s'])} |"
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
        "machine": {**machine_info(), "gpu": None},
        "settings": {
            "trials": args.trials, "max_epochs": args.max_epochs, "seed": args.seed, "quick": args.quick,
            "env": args.env, "subreaper": subreaper, "repeat": args.repeat, "wait_idle": args.wait_idle,
            "nice": args.nice,
        },
        "results": {name: (runs[0] if len(runs) == 1 else {"median": _median_run(runs), "runs": runs})
                    for name, runs in results.items()},
        "ratios": ratios,
        "versions": versions("ray", "optuna", "torch", "scikit-learn", "stepsize"),
        "git": git_state(),
    }
    write_json(out_path, payload, default=str)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="6 trials x 4 epochs, a smoke test")
    parser.add_argument("--out", default=str(results_file(__file__, "digits_overhead.json")))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, from " + ", ".join(VARIANTS + EXTRA_VARIANTS))
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in every subprocess")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all variants; the median run is shown")
    add_child_options(parser, "variant", VARIANTS + EXTRA_VARIANTS, timeout=3600.0, wait_idle=120.0)
    args = parser.parse_args()
    if args.child:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
