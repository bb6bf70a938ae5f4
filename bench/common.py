"""What the benchmarks share: result files, the machine and versions, quiet measurement, child
processes, study specs in a temporary folder, trials run outside a study, the study on Ray Tune as
``launch`` builds it, and the lcbench trace and regret.

Everything here uses stepsize's public API only (no ``_`` names from ``orchestrator``, Optuna or
Ray, no ``orchestrator._compat``, no monkeypatching). Run every benchmark from the repository
root as a module: ``.venv/bin/python -m bench.<benchmark>.<script> ...``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    import optuna

    from orchestrator.run.progress import SearchProgress
    from orchestrator.run.simulate import Simulation
    from orchestrator.spec import StudySpec
    from orchestrator.study.summary import StudySummary
    from orchestrator.workloads.lcbench import Surrogate

ROOT = Path(__file__).resolve().parent.parent
CORES = os.cpu_count() or 1


# -- result files ------------------------------------------------------------------------------
def results_file(script: str, name: str) -> Path:
    """``name`` in the ``results/`` folder beside the benchmark script ``script`` (its ``__file__``)."""
    return Path(script).resolve().parent / "results" / name


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else default


def write_json(path: str | os.PathLike[str], data: Any, indent: int = 1, **dumps: Any) -> Path:
    """Write ``data`` as JSON (the folder made, the file replaced at once, so a reader or a killed
    run never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, **dumps) + "\n")
    tmp.replace(path)
    return path


# -- the machine -------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    return {"cores": CORES, "machine": platform.machine(), "python": platform.python_version(),
            "platform": platform.platform()}


def versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in packages or ("stepsize", "ray", "optuna", "torch", "mlflow", "scikit-learn"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "?"
    return out


def git_state() -> dict[str, Any]:
    """The commit measured and whether the working tree had changes (read-only git calls)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--short", "--untracked-files=no").splitlines()}


# -- quiet measurement -------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def system_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat; steal excluded)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = parts[:7]
    busy = user + nice + system + irq + softirq
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


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


def run_module(module: str, args: Sequence[str], *, log: Path | None = None, env: Mapping[str, str] | None = None,
               nice: int = 0, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` in a fresh interpreter from the repository root (stdout and
    stderr to ``log``, else captured), at niceness ``+nice`` (negative: root only)."""
    full = dict(os.environ if env is None else env)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in full.get("PYTHONPATH", "").split(os.pathsep) if p])
    command = [sys.executable, "-m", module, *args]
    preexec = (lambda: os.nice(nice)) if nice else None
    if log is None:
        return subprocess.run(command, cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=preexec)
    with open(log, "w") as handle:
        return subprocess.run(command, cwd=ROOT, env=full, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout,
                              preexec_fn=preexec)


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """This process's resident memory every ``interval`` seconds; ``peak`` is the largest seen."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0.0
        self.samples: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            rss = rss_mib()
            self.samples.append(rss)
            self.peak = max(self.peak, rss)

    def stop(self) -> float:
        self._halt.set()
        return max(self.peak, rss_mib())


# -- numbers -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def describe(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, median, p90, max and sum of ``values`` (``{"n": 0}`` when empty)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "mean": statistics.fmean(values), "median": statistics.median(values),
            "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "max": ordered[-1], "sum": sum(values)}


def suggest_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """The searcher's suggest times (``SearchProgress.suggest_seconds``) in ms: p50, p95, max, p95
    of the last 500, the mean of each block of 500 and the p95 of each block of 1,000."""
    ms = [1000 * s for s in seconds]
    if not ms:
        return {}
    return {
        "suggest_ms_p50": round(percentile(ms, 0.5), 2),
        "suggest_ms_p95": round(percentile(ms, 0.95), 2),
        "suggest_ms_max": round(max(ms), 2),
        "suggest_ms_p95_last_500": round(percentile(ms[-500:], 0.95), 2),
        "suggest_ms_mean_by_500": [round(statistics.fmean(ms[i:i + 500]), 2) for i in range(0, len(ms), 500)],
        "suggest_ms_p95_by_1000": [round(percentile(ms[i:i + 1000], 0.95), 2) for i in range(0, len(ms), 1000)],
    }


# -- studies -----------------------------------------------------------------------------------
def temp_study(name: str, folder: str | os.PathLike[str], **fields: Any) -> "StudySpec":
    """A study spec whose Optuna storage, MLflow store and Ray results live in ``folder``."""
    from orchestrator.spec import spec_from_mapping

    folder = Path(folder)
    return spec_from_mapping({
        "name": name,
        "storage": f"sqlite:///{folder / (name + '.db')}",
        "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
        "results_dir": str(folder / "ray"),
        **fields,
    })


@dataclass
class TuneRun:
    """A study run by :func:`tune_study`: the study, the run's progress (with the driver's time
    for each suggest) and the summary."""

    study: "optuna.Study"
    progress: "SearchProgress"
    summary: "StudySummary"


def tune_study(spec: "StudySpec", *, stop: Any = None, callbacks: Sequence[Any] = ()) -> TuneRun:
    """Create ``spec``'s study and run it as ``launch`` does (``orchestrator.run.launch.run_study``),
    quietly, with the benchmark's own Tune ``stop``per (on top of the epoch budget) and extra
    Tune ``callbacks``."""
    from orchestrator.run.ray_session import apply_tune_settings, ensure_ray

    apply_tune_settings()  # before Ray Tune is imported
    from orchestrator.run.launch import Console, run_study
    from orchestrator.study.driver_lock import claim_driver
    from orchestrator.study.storage import create_study

    ensure_ray(spec.address)
    study = create_study(spec)
    claim_driver(study)
    outcome = run_study(study, spec, spec.budget.trials, Console(quiet=True), callbacks=callbacks, stopper=stop)
    return TuneRun(study, outcome.progress, outcome.summary)


# -- trials outside a study --------------------------------------------------------------------
class StopTrial(Exception):
    """Raised from an ``on_epoch`` callback to end a :func:`train_workload` run (a pruner said so)."""


def train_workload(workload: str, config: Mapping[str, Any], *, epochs: int, seed: int = 0,
                   threads: int | None = None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
                   divergence_factor: float | None = 4.0, options: Mapping[str, Any] | None = None,
                   number: int = 0) -> list[dict[str, Any]]:
    """Train one configuration of ``workload`` as a study's trial would (``run_trial``: the
    trial's seed is ``seed + number``, torch gets ``threads`` threads, default torch's own), with no
    Ray and no study; return every epoch's metrics. ``on_epoch`` sees each one and may raise
    :class:`StopTrial` (or any error) to stop. A diverged trial's last entry has ``diverged``
    set and its reason in ``diverged_reason``."""
    import torch

    from orchestrator.keys import Config
    from orchestrator.trial.runner import TrialRuntime, run_trial

    runtime = TrialRuntime(workload=workload, max_epochs=epochs, seed=seed, gpu=0,
                           cpus=threads or torch.get_num_threads(), divergence_factor=divergence_factor,
                           retry_errors=True, options=dict(options or {}))
    seen: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], folder: str | None = None) -> None:
        seen.append(dict(metrics))
        if on_epoch is not None:
            on_epoch(seen[-1])

    run_trial({**config, Config.TRIAL_NUMBER: number}, runtime, report)
    return seen


# -- lcbench: the trace of a run and its regret ------------------------------------------------
BUDGET = 6544  # epochs per lcbench run: the YAHPO Gym paper's budget
FRACTIONS = (0.25, 0.5, 1.0)


class Trace:
    """Counts epochs as they are reported and keeps the incumbent's improvements."""

    def __init__(self, budget: int):
        self.budget = budget
        self.epochs = 0
        self.best = -math.inf
        self.steps: list[tuple[int, float]] = []  # (epochs so far, new incumbent)
        self.trials: set[Any] = set()
        self.suggest_seconds: list[float] = []

    @property
    def spent(self) -> bool:
        return self.epochs >= self.budget

    def add(self, trial: Any, value: float) -> None:
        if self.spent:
            return
        self.epochs += 1
        self.trials.add(trial)
        if value > self.best:
            self.best = value
            self.steps.append((self.epochs, float(value)))


def incumbent_at(steps: Sequence[Sequence[float]], epochs: float) -> float:
    best = -math.inf
    for spent, value in steps:
        if spent > epochs:
            break
        best = value
    return best


def regret(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return 1.0 if value == -math.inf else (high - value) / (high - low)


def lcbench_spec(task: str, seed: int, space: str, folder: Path, tmp: Path, overrides: Mapping[str, Any]) -> "StudySpec":
    """The default stepsize study on lcbench task ``task`` (maximise val_accuracy, 51 epochs),
    its stores in ``tmp``, with ``overrides`` (top-level spec fields)."""
    from orchestrator.workloads.lcbench import MAX_EPOCHS

    fields = {
        "name": f"sq-{task}-{seed}",
        "workload": "lcbench",
        "workload_options": {"task": task, "data_dir": str(folder)},
        "search_space": space,
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "budget": {"trials": 100_000, "max_epochs": MAX_EPOCHS},
        "seed": seed,
        **overrides,
    }
    return temp_study(fields.pop("name"), tmp, **fields)


def replay(spec: "StudySpec", surrogate: "Surrogate", trace: Trace, storage: Any = None,
           max_trials: int | None = None, sampler: Any = None, concurrency: int | None = None,
           owned: bool = True) -> "Simulation":
    """``spec``'s search played in-process (``orchestrator.run.simulate``) on the surrogate's
    curves for the spec's task, every epoch's val_accuracy added to ``trace``, until the trace's
    budget is spent (or ``max_trials`` trials ran); ``sampler`` replaces the spec's; ``owned``:
    the study read through the driver's in-memory view (False: every read from the storage)."""
    from orchestrator.run.simulate import simulate

    task = spec.workload_options["task"]

    def curve(params: dict[str, Any]) -> Callable[[int], dict[str, float]]:
        rows = surrogate.curve(task, params, first=0)  # row = epoch
        return lambda epoch: {"val_accuracy": float(rows[epoch, 1])}

    def on_epoch(trial_id: str, epoch: int, metrics: Mapping[str, float]) -> bool:
        trace.add(trial_id, metrics["val_accuracy"])
        return trace.spent

    sim = simulate(spec, curve, max_trials=max_trials, on_epoch=on_epoch, storage=storage, sampler=sampler,
                   concurrency=concurrency, owned=owned)
    trace.suggest_seconds = list(sim.searcher.progress.suggest_seconds)
    return sim
