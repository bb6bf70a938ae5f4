"""Search quality on the lcbench surrogate: stepsize's default search against the tools users
would pick instead, every method charged one unit per epoch trained.

Methods (same tasks, seeds, search space and epoch budget; objective: maximise val_accuracy):

- ``stepsize``: the default spec (sampler and scheduler defaults declared beside each component)
  with ``budget.epochs`` set to the budget, run as ``stepsize launch`` runs it
  (``orchestrator.run.launch.run_study``: Ray Tune with stepsize's searcher, scheduler, trainable
  and SQLite storage); the study's own epoch budget ends it, a tracing callback only listens;
- ``random``: random search at full fidelity (every trial trains all 51 epochs);
- ``optuna_tpe_median``: plain Optuna, ``TPESampler(seed)`` with ``MedianPruner()``, sequential;
- ``optuna_tpe_hyperband``: plain Optuna, ``TPESampler(seed)`` with ``HyperbandPruner(max_resource=51)``;
- ``ray_optuna_asha``: stock Ray Tune, ``OptunaSearch(seed)`` with ``ASHAScheduler(max_t=51)``;
- ``stepsize_replay``: stepsize's default searcher, sampler and ASHA scheduler with the trials
  played in-process two at a time (``orchestrator.run.simulate``, as ``bench.search_quality.tuning``
  uses it): no Ray, no SQLite, seconds per run; a check on, not a substitute for, ``stepsize``;
- anchors ``smac_mf``, ``smac_hb``, ``syne_bohb``, ``syne_asha``, ``dehb``: SMAC3, Syne Tune and DEHB
  (``bench.search_quality.anchors``; their libraries in a venv of their own).

A run ends when the epochs trained reach the budget (6544 by default, the YAHPO Gym paper's for
lcbench); the Ray Tune methods stop every trial at that point. The incumbent after ``e`` epochs is
the best val_accuracy reported at any epoch of any trial within the first ``e`` epochs trained (in
the order the driver received them); normalised regret is ``(max - incumbent) / (max - min)`` with
the task's bounds from ``target_statistics.csv``.

Results go to a JSON file after every (method, task, seed) cell; a rerun skips cells already there.

    STEPSIZE_TRACKING=off nice -n 10 .venv/bin/python -m bench.search_quality.search_quality \\
        --tasks 3945 7593 --seeds 0 1 --methods stepsize random [--space lcbench_7d] \\
        [--variant 'name={"scheduler": {"name": "asha", "grace_period": 3}}'] [--report]

``--report --paired smac_mf`` adds each method's cell-by-cell difference from ``smac_mf``, with a
bootstrap interval (``bench.search_quality.paired``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import (
    BUDGET,
    FRACTIONS,
    Trace,
    incumbent_at,
    lcbench_spec,
    read_json,
    regret,
    replay,
    results_file,
    tune_study,
    write_json,
)
from bench.search_quality import paired
from bench.search_quality.anchors import ANCHORS
from orchestrator.keys import Env
from orchestrator.workloads.lcbench import MAX_EPOCHS, Surrogate, load_surrogate

os.environ.setdefault(Env.TRACKING, "off")

TARGET_REGRET = 0.05
DEFAULT_TASKS = ("167168", "189873", "167201", "189862", "168330")  # report tasks; tuning used others
BASELINES = ("random", "optuna_tpe_median", "optuna_tpe_hyperband", "ray_optuna_asha")
RESULTS = results_file(__file__, "search_quality.json")


# -- sequential methods (plain Optuna, random) -------------------------------------------------
def run_optuna(surrogate: Surrogate, task: str, seed: int, space: Any, pruner: Any, budget: int, sampler: Any) -> Trace:
    """Plain Optuna: ask, report every epoch, stop when the pruner says so; one trial at a time."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    dists = space.distributions()
    trace = Trace(budget)
    while not trace.spent:
        trial = study.ask(dists)
        curve = surrogate.curve(task, {**space.fixed_values(), **trial.params}, first=0)  # row = epoch
        value = None
        for epoch in range(1, MAX_EPOCHS + 1):
            value = float(curve[epoch, 1])
            trace.add(trial.number, value)
            if trace.spent:
                break
            trial.report(value, epoch)
            if trial.should_prune():
                break
        if epoch < MAX_EPOCHS:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return trace


def sequential_method(name: str) -> Callable[..., Trace]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def run(surrogate: Surrogate, task: str, seed: int, space: Any, budget: int) -> Trace:
        if name == "random":
            sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()
        elif name == "optuna_tpe_median":
            sampler, pruner = optuna.samplers.TPESampler(seed=seed), optuna.pruners.MedianPruner()
        else:
            sampler = optuna.samplers.TPESampler(seed=seed)
            pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_EPOCHS)
        return run_optuna(surrogate, task, seed, space, pruner, budget, sampler)

    return run


# -- Ray Tune methods --------------------------------------------------------------------------
def _budget_stopper(trace: Trace) -> Any:
    from ray.tune import Stopper

    class EpochBudget(Stopper):
        """Stops every trial once the epochs trained reach the budget."""

        def __call__(self, trial_id: str, result: dict) -> bool:
            return trace.spent

        def stop_all(self) -> bool:
            return trace.spent

    return EpochBudget()


def _trace_callback(trace: Trace, metric: str) -> Any:
    from ray.tune import Callback

    class Record(Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            value = result.get(metric)
            if value is not None:
                trace.add(trial.trial_id, float(value))

    return Record()


def run_stepsize(task: str, seed: int, space: str, folder: Path, budget: int, overrides: dict[str, Any]) -> Trace:
    """stepsize's search as ``stepsize launch`` runs it (``run_study``: searcher, scheduler,
    trainable, SQLite), ended by the study's own ``budget.epochs``; the trace only listens."""
    trace = Trace(budget)
    with tempfile.TemporaryDirectory() as tmp:
        spec = lcbench_spec(task, seed, space, folder, Path(tmp), {**epoch_budget(budget), **overrides})
        run = tune_study(spec, callbacks=[_trace_callback(trace, "val_accuracy")])
        trace.suggest_seconds = list(run.progress.suggest_seconds)
    return trace


def epoch_budget(budget: int) -> dict[str, Any]:
    """The spec override that makes ``budget`` epochs over all trials the study's budget."""
    return {"budget": {"max_epochs": MAX_EPOCHS, "epochs": budget}}


def run_ray_optuna_asha(task: str, seed: int, space_name: str, folder: Path, budget: int, concurrency: int) -> Trace:
    """Stock Ray Tune: OptunaSearch (its default TPE) and ASHAScheduler, a plain function trainable."""
    from orchestrator.run.ray_session import apply_tune_settings, ensure_ray
    from search_spaces import load_preset

    apply_tune_settings()  # the settings stepsize runs Tune with, for both Ray methods alike
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    ensure_ray(None)
    space = load_preset(space_name)
    folder_s = str(folder)

    def trainable(config: dict) -> None:
        from orchestrator.workloads.lcbench import load_surrogate as load

        curve = load(folder_s).curve(task, config, first=0)  # row = epoch
        for epoch in range(1, MAX_EPOCHS + 1):
            tune.report({"val_accuracy": float(curve[epoch, 1]), "epoch": epoch})

    trace = Trace(budget)
    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(space=space.distributions(), metric="val_accuracy", mode="max", seed=seed),
                scheduler=ASHAScheduler(metric="val_accuracy", mode="max", max_t=MAX_EPOCHS),
                num_samples=100_000,
                max_concurrent_trials=concurrency,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"ray-{task}-{seed}",
                storage_path=str(Path(tmp) / "ray"),
                stop=_budget_stopper(trace),
                callbacks=[_trace_callback(trace, "val_accuracy")],
                verbose=0,
            ),
        )
        tuner.fit()
    return trace


# -- the run -----------------------------------------------------------------------------------
def load_results(path: Path) -> dict[str, Any]:
    return read_json(path, {"budget": BUDGET, "cells": {}})


def cell_key(method: str, space: str, task: str, seed: int) -> str:
    return f"{method}|{space}|{task}|{seed}"


def run_cell(method: str, variant: dict[str, Any] | None, task: str, seed: int, args: argparse.Namespace,
             surrogate: Surrogate) -> dict[str, Any]:
    from search_spaces import load_preset

    started = time.perf_counter()
    if variant is not None:
        trace = run_stepsize(task, seed, args.space, surrogate.folder, args.budget, variant)
    elif method == "stepsize_replay":  # stepsize's searcher and ASHA, trials played in-process
        trace = Trace(args.budget)
        with tempfile.TemporaryDirectory() as tmp:
            replay(lcbench_spec(task, seed, args.space, surrogate.folder, Path(tmp), epoch_budget(args.budget)),
                   surrogate, trace)
    elif method == "ray_optuna_asha":
        trace = run_ray_optuna_asha(task, seed, args.space, surrogate.folder, args.budget, args.concurrency)
    elif method in ANCHORS:
        trace = ANCHORS[method](surrogate, task, seed, load_preset(args.space), args.budget)
    else:
        trace = sequential_method(method)(surrogate, task, seed, load_preset(args.space), args.budget)
    cell = {
        "method": method, "space": args.space, "task": task, "seed": seed, "budget": args.budget,
        "epochs": trace.epochs, "trials": len(trace.trials), "steps": trace.steps,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    suggest = trace.suggest_seconds
    if suggest and method != "stepsize_replay":
        ordered = sorted(suggest)
        cell["suggest_p50_ms"] = 1000 * ordered[len(ordered) // 2]
        cell["suggest_p95_ms"] = 1000 * ordered[int(0.95 * (len(ordered) - 1))]
    return cell


def parse_variants(items: list[str]) -> dict[str, dict[str, Any]]:
    variants: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, text = item.partition("=")
        if not name or not text:
            sys.exit(f"--variant {item!r}: write NAME='{{json spec overrides}}', e.g. g3='{{\"scheduler\": {{\"name\": \"asha\", \"grace_period\": 3}}}}'")
        variants[name] = json.loads(text)
    return variants


# -- the report --------------------------------------------------------------------------------
def summarise(results: dict[str, Any], surrogate: Surrogate, space: str, tasks: list[str] | None = None,
              seeds: list[int] | None = None) -> dict[str, dict[str, Any]]:
    """Per method: mean normalised regret at each budget fraction and epochs to the target."""
    rows: dict[str, dict[str, Any]] = {}
    cells = [c for c in results["cells"].values() if c["space"] == space
             and (tasks is None or c["task"] in tasks) and (seeds is None or c["seed"] in seeds)]
    for method in sorted({c["method"] for c in cells}):
        mine = [c for c in cells if c["method"] == method]
        row: dict[str, Any] = {"cells": len(mine), "tasks": len({c["task"] for c in mine}),
                               "seeds": len({c["seed"] for c in mine})}
        for fraction in FRACTIONS:
            values = [regret(incumbent_at(c["steps"], fraction * c["budget"]),
                             surrogate.bound(c["task"], "val_accuracy")) for c in mine]
            row[f"regret@{int(fraction * 100)}%"] = statistics.fmean(values)
        reach = []
        for c in mine:
            bounds = surrogate.bound(c["task"], "val_accuracy")
            hit = next((e for e, v in c["steps"] if regret(v, bounds) <= TARGET_REGRET), None)
            reach.append(hit)
        hits = sorted(h for h in reach if h is not None)
        row["reached"] = f"{len(hits)}/{len(reach)}"
        row["epochs_to_target_median"] = statistics.median([h if h is not None else math.inf for h in reach])
        row["wall_s_mean"] = statistics.fmean(c["wall_s"] for c in mine)
        row["trials_mean"] = statistics.fmean(c["trials"] for c in mine)
        rows[method] = row
    return rows


def cell_regrets(results: dict[str, Any], surrogate: Surrogate, tasks: list[str] | None = None,
                 seeds: list[int] | None = None) -> paired.Regrets:
    """``method -> (task, seed) -> fraction -> regret`` for the cells in ``results``."""
    regrets: dict[str, dict[tuple[str, int], dict[float, float]]] = {}
    for c in results["cells"].values():
        if (tasks is None or c["task"] in tasks) and (seeds is None or c["seed"] in seeds):
            bounds = surrogate.bound(c["task"], "val_accuracy")
            regrets.setdefault(c["method"], {})[(c["task"], c["seed"])] = {
                f: regret(incumbent_at(c["steps"], f * c["budget"]), bounds) for f in FRACTIONS}
    return regrets


def per_task_table(regrets: paired.Regrets, methods: list[str]) -> str:
    """Mean regret over seeds per task (rows) and method (columns), as ``25% / 50% / 100%``; the
    lowest at each fraction in bold."""
    tasks = sorted({task for m in methods for task, _ in regrets.get(m, {})})
    lines = ["| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task in tasks:
        means = {}
        for m in methods:
            cells = [v for (t, _), v in regrets.get(m, {}).items() if t == task]
            means[m] = {f: statistics.fmean(c[f] for c in cells) for f in FRACTIONS} if cells else None
        best = {f: min(v[f] for v in means.values() if v) for f in FRACTIONS}
        shown = [" / ".join(f"**{v[f]:.4f}**" if v[f] == best[f] else f"{v[f]:.4f}" for f in FRACTIONS)
                 if v else "" for v in means.values()]
        lines.append(f"| {task} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    head = ("| method | cells (tasks x seeds) | regret @25% | regret @50% | regret @100% | "
            f"runs reaching regret <= {TARGET_REGRET} | median epochs to it | trials per run | wall s per run |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for method, r in sorted(rows.items(), key=lambda kv: kv[1]["regret@100%"]):
        epochs = r["epochs_to_target_median"]
        lines.append(
            f"| {method} | {r['cells']} ({r['tasks']} x {r['seeds']}) | {r['regret@25%']:.4f} | {r['regret@50%']:.4f} | "
            f"{r['regret@100%']:.4f} | {r['reached']} | {'never' if epochs == math.inf else int(epochs)} | "
            f"{r['trials_mean']:.0f} | {r['wall_s_mean']:.0f} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], surrogate: Surrogate, space: str, out: Path, tasks: list[str] | None = None,
         seeds: list[int] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in results["cells"].values() if c["space"] == space
             and (tasks is None or c["task"] in tasks) and (seeds is None or c["seed"] in seeds)]
    if not cells:
        return
    budget = max(c["budget"] for c in cells)
    grid = [int(budget * i / 100) for i in range(2, 101)]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for index, method in enumerate(sorted({c["method"] for c in cells})):
        mine = [c for c in cells if c["method"] == method]
        curve = [statistics.fmean(regret(incumbent_at(c["steps"], e), surrogate.bound(c["task"], "val_accuracy"))
                                  for c in mine) for e in grid]
        ax.plot(grid, curve, label=f"{method} ({len(mine)} runs)", linestyle=("-", "--", ":")[index // 10 % 3])
    ax.set_xlabel("epochs trained (budget units)")
    ax.set_ylabel("mean normalised regret (val_accuracy)")
    ax.set_yscale("symlog", linthresh=0.01)  # a mean regret can fall below 0 (the surrogate above the task's recorded best)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"lcbench ({space}): anytime regret, budget {budget} epochs")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--methods", nargs="+", default=["stepsize", *BASELINES])
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME='{json spec overrides}': a stepsize method with these spec fields")
    parser.add_argument("--space", default="lcbench_7d")
    parser.add_argument("--budget", type=int, default=BUDGET)
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent trials of ray_optuna_asha")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--merge", nargs="*", type=Path, default=[],
                        help="more results files (e.g. from a parallel run of other methods) to include in the report")
    parser.add_argument("--report", action="store_true", help="print the table and write the plot only")
    parser.add_argument("--report-methods", nargs="*", default=None, help="methods in the report (default: all)")
    parser.add_argument("--common", action="store_true",
                        help="report only the (task, seed) pairs every reported method has run")
    parser.add_argument("--plot", type=Path, default=None, help="the anytime plot's file")
    parser.add_argument("--per-task", nargs="*", default=[], metavar="METHOD",
                        help="also print a table of each METHOD's mean regret per task at 25 / 50 / 100%% of the budget")
    parser.add_argument("--paired", nargs="*", default=[], metavar="REFERENCE",
                        help="also print each method's regret minus REFERENCE's, cell by cell, with a 95%% "
                             "bootstrap interval (bench.search_quality.paired)")
    args = parser.parse_args()
    surrogate = load_surrogate(args.data_dir)
    for task in args.tasks:
        surrogate.task_code(task)
    variants = parse_variants(args.variant)
    methods = [m for m in args.methods if m not in variants] + list(variants)
    results = load_results(args.results)
    if not args.report:
        for seed in args.seeds:
            for task in args.tasks:
                for method in methods:
                    key = cell_key(method, args.space, task, seed)
                    if key in results["cells"]:
                        continue
                    variant = variants.get(method, {} if method == "stepsize" else None)
                    cell = run_cell(method, variant, task, seed, args, surrogate)
                    results["cells"][key] = cell
                    write_json(args.results, results)
                    r = regret(incumbent_at(cell["steps"], args.budget), surrogate.bound(task, "val_accuracy"))
                    print(f"{key}: regret {r:.4f}, {cell['trials']} trials, {cell['wall_s']:.0f} s", flush=True)
    for extra in args.merge:
        results["cells"].update({k: v for k, v in load_results(extra)["cells"].items() if k not in results["cells"]})
    results["cells"] = select_cells(results["cells"], args.space, args.report_methods, args.common)
    rows = summarise(results, surrogate, args.space, args.tasks, args.seeds)
    print(markdown_table(rows))
    regrets = cell_regrets(results, surrogate, args.tasks, args.seeds) if args.per_task or args.paired else {}
    if args.per_task:
        print()
        print(per_task_table(regrets, args.per_task))
    for reference in args.paired:
        print()
        print(paired.markdown(paired.paired_differences(regrets, reference), reference))
    out = args.plot or args.results.with_name(args.results.stem + f"_{args.space}.png")
    plot(results, surrogate, args.space, out, args.tasks, args.seeds)


def select_cells(cells: dict[str, Any], space: str, methods: list[str] | None, common: bool) -> dict[str, Any]:
    """The cells of ``methods`` (all when None); with ``common``, only (task, seed) pairs all have."""
    chosen = {k: c for k, c in cells.items() if c["space"] == space and (methods is None or c["method"] in methods)}
    if not common:
        return chosen
    names = {c["method"] for c in chosen.values()}
    pairs = [{(c["task"], c["seed"]) for c in chosen.values() if c["method"] == m} for m in names]
    shared = set.intersection(*pairs) if pairs else set()
    return {k: c for k, c in chosen.items() if (c["task"], c["seed"]) in shared}


if __name__ == "__main__":
    main()
