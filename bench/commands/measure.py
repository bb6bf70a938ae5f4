"""How long the commands that answer at once take, against ``python -c "import torch"`` timed in
the same run: ``stepsize --help``, ``status NAME``, ``best NAME``, ``presets``, ``ui --help`` and a
spec validation error (``launch`` on a study file with an unknown field); and, as the floor for
``status`` and ``best``, Optuna alone reading the study (:data:`OPTUNA_FLOOR`).

A small real study is made once in a temporary folder, in an SQLite storage, through stepsize's
own ``create_study`` and Optuna's ask and tell, recorded as a launch records its trials (30 trials
of the default search space: complete ones with their final metrics, pruned ones, three failed
ones with their tracebacks; the driver's claim taken and released). Then every command runs in a
fresh interpreter (``python -m orchestrator.cli ...``, from the repository root), one after the
other in a round, for ``--repeats`` rounds, each round starting one command later than the last;
the machine is let go quiet (``wait_for_quiet``) before each round. Reported per command: median,
min and max wall seconds, the median CPU seconds (user + system, all its threads), and its medians
over ``import torch``'s. Each command then runs once more with ``-X importtime``: its import time
by top-level package (where the time goes), and which of torch, Ray, MLflow and SciPy it imported
(none should be). ``--baseline DIR`` times the same commands of another checkout of stepsize (an
earlier commit: ``git worktree add DIR COMMIT``) in the same rounds, labelled ``@baseline``, and
adds the median of the round-by-round differences to them (less exposed to a drifting machine).

    .venv/bin/python -m bench.commands.measure [--repeats 7] [--quiet-wait 60] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, git_state, machine_info, results_file, versions, wait_for_quiet, write_json

NAME = "bench"
HEAVY = ("torch", "ray", "mlflow", "scipy")
#: The least a ``status`` can do through Optuna's public API: open the storage, list its studies,
#: load the study (no sampler to build) and read its trials; then end as the ``stepsize`` command
#: ends, without the interpreter's teardown of its modules (``os._exit``, about 0.2 s less).
OPTUNA_FLOOR = ("import os, sys, optuna; storage = optuna.storages.RDBStorage(sys.argv[1]); "
                "optuna.get_all_study_names(storage); optuna.load_study(study_name=sys.argv[2], storage=storage, "
                "sampler=optuna.samplers.RandomSampler()).get_trials(deepcopy=False); os._exit(0)")


def make_study(folder: Path) -> str:
    """A 30-trial study named :data:`NAME` in ``folder/optuna.db``; returns its storage URL."""
    import optuna

    from orchestrator.keys import TrialAttr
    from orchestrator.spec import spec_from_mapping
    from orchestrator.study.driver_lock import claim_driver, release_driver
    from orchestrator.study.storage import create_study

    storage = f"sqlite:///{folder / 'optuna.db'}"
    spec = spec_from_mapping({"name": NAME, "storage": storage, "workload": "digits_mlp", "seed": 1,
                              "budget": {"trials": 30, "max_epochs": 6}})
    study = create_study(spec)
    claim_driver(study)
    for number in range(30):
        trial = study.ask()
        spec.search_space.suggest(trial)
        if number % 10 == 7:
            trial.set_user_attr(TrialAttr.ERROR, f"Traceback (most recent call last):\n  ...\nValueError: trial {number}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        epochs = 6 if number % 3 == 0 else 2
        loss = 0.15 + 1.0 / (number + 2) + (0.3 if epochs < 6 else 0.0)
        trial.set_user_attr(TrialAttr.EPOCHS, epochs)
        trial.set_user_attr(TrialAttr.FINAL_METRICS, {"epoch": epochs, "train_loss": loss * 0.9, "val_loss": loss,
                                                      "val_accuracy": 1 - loss / 2, "epoch_time_s": 0.03})
        if epochs == 6:
            trial.set_user_attr(TrialAttr.STOP_REASON, "completed")
            study.tell(trial, loss)
        else:
            trial.set_user_attr(TrialAttr.STOP_REASON, f"pruned at epoch {epochs}")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    release_driver(study)
    return storage


def commands(storage: str, bad_spec: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "orchestrator.cli"]
    return {
        "--help": cli + ["--help"],
        "status": cli + ["status", NAME, "--storage", storage],
        "best": cli + ["best", NAME, "--storage", storage],
        "presets": cli + ["presets"],
        "ui --help": cli + ["ui", "--help"],
        "spec error": cli + ["launch", str(bad_spec)],
    }


EXPECTED = {"status": (0, "study bench: 30 trials"), "best": (0, "study: bench"), "presets": (0, "presets"),
            "--help": (0, "usage: stepsize"), "ui --help": (0, "usage: stepsize ui"),
            "spec error": (2, "invalid study spec: `bogus_field`"), "import torch": (0, ""), "optuna floor": (0, "")}


@dataclass
class Run:
    """A command and the checkout it runs in (its folder: the working folder and PYTHONPATH)."""

    label: str
    command: list[str]
    root: Path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                                if p])
        return env


def timed(run: Run) -> tuple[float, float]:
    """Wall and CPU seconds of ``run`` in a fresh process (its exit code and output checked)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(run.command, cwd=run.root, env=run.env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, words = EXPECTED[run.label.split(" @")[0]]
    assert done.returncode == code and words in done.stdout + done.stderr, (run.label, done.returncode,
                                                                            done.stderr[-2000:])
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_profile(run: Run) -> dict[str, Any]:
    """One run with ``-X importtime``: seconds of imports by top-level package (self times
    summed), their total, and the heavy packages imported."""
    command = run.command
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], cwd=run.root, env=run.env,
                          capture_output=True, text=True, timeout=300)
    by_package: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, _, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if self_us.isdigit():
            by_package[name.split(".")[0]] += int(self_us) / 1e6
    top = dict(sorted(by_package.items(), key=lambda item: -item[1])[:12])
    return {"imports_s": round(sum(by_package.values()), 4), "modules_by_package_s": {k: round(v, 4) for k, v in top.items()},
            "heavy_imported": [name for name in HEAVY if name in by_package]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quiet-wait", type=float, default=60.0, dest="quiet_wait",
                        help="seconds to wait at most for a quiet machine before each round")
    parser.add_argument("--baseline", type=Path, help="another checkout of stepsize whose commands to time as well")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="stepsize-commands-") as tmp:
        folder = Path(tmp)
        storage = make_study(folder)
        bad_spec = folder / "bad.yaml"
        bad_spec.write_text("name: bad\nworkload: digits_mlp\nbogus_field: 1\n")
        runs = [Run("import torch", [sys.executable, "-c", "import torch"], ROOT),
                Run("optuna floor", [sys.executable, "-c", OPTUNA_FLOOR, storage, NAME], ROOT)]
        runs += [Run(label, command, ROOT) for label, command in commands(storage, bad_spec).items()]
        if args.baseline is not None:
            runs += [Run(f"{label} @baseline", command, args.baseline.resolve())
                     for label, command in commands(storage, bad_spec).items()]
        walls: dict[str, list[float]] = {run.label: [] for run in runs}
        cpus: dict[str, list[float]] = {run.label: [] for run in runs}
        busy: list[float] = []
        for run in runs:  # warm the file cache once: the first cold run is not what a user sees twice
            timed(run)
        for round_ in range(args.repeats):
            busy.append(round(wait_for_quiet(args.quiet_wait), 3))
            for run in runs[round_ % len(runs):] + runs[:round_ % len(runs)]:
                wall, cpu = timed(run)
                walls[run.label].append(wall)
                cpus[run.label].append(cpu)
            print(f"round {round_}: busy {busy[-1]:.2f}", {k: round(v[-1], 3) for k, v in walls.items()},
                  file=sys.stderr, flush=True)
        imports = {run.label: import_profile(run) for run in runs}

    torch_wall, torch_cpu = statistics.median(walls["import torch"]), statistics.median(cpus["import torch"])
    summary = {}
    for run in runs:
        label = run.label
        median, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
        summary[label] = {"median_s": round(median, 4), "min_s": round(min(walls[label]), 4),
                          "max_s": round(max(walls[label]), 4), "ratio_to_import_torch": round(median / torch_wall, 3),
                          "cpu_median_s": round(cpu, 4), "cpu_ratio_to_import_torch": round(cpu / torch_cpu, 3),
                          **imports[label]}
        if label.endswith(" @baseline"):  # paired by round: less exposed to the machine's drift than the medians
            mine = label[:-len(" @baseline")]
            summary[mine]["wall_minus_baseline_paired_median_s"] = round(statistics.median(
                a - b for a, b in zip(walls[mine], walls[label])), 4)
            summary[mine]["cpu_minus_baseline_paired_median_s"] = round(statistics.median(
                a - b for a, b in zip(cpus[mine], cpus[label])), 4)
    shown = {run.label: [part.replace(tmp, "$TMP") for part in run.command[1:]] for run in runs}
    out = write_json(results_file(__file__, "commands.json"), {
        "machine": machine_info(), "versions": versions(), "git": git_state(), "repeats": args.repeats,
        "baseline": None if args.baseline is None else str(args.baseline),
        "busy_share_before_each_round": busy, "commands": shown, "summary": summary,
        "wall_s": {label: [round(w, 4) for w in values] for label, values in walls.items()},
        "cpu_s": {label: [round(c, 4) for c in values] for label, values in cpus.items()},
    })
    for label, row in summary.items():
        print(f"{label:<22} median {row['median_s']:.3f} s  min {row['min_s']:.3f}  max {row['max_s']:.3f}  "
              f"{row['ratio_to_import_torch']:.2f}x import torch  cpu {row['cpu_median_s']:.3f} s "
              f"({row['cpu_ratio_to_import_torch']:.2f}x)  imports {row['imports_s']:.3f} s  "
              f"heavy {row['heavy_imported'] or 'none'}")
    print("written to", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
