"""Where a ``stepsize launch`` spends its start and its finish, against an earlier commit.

Each arm runs the real command, ``python -m orchestrator.cli launch`` on a small digits study
(``examples/digits.yaml``, ``--trials 4 --max-epochs 3``, fresh SQLite storage, MLflow on SQLite
and a results folder in a temporary folder), in a fresh process, alternating arm by arm in one
invocation. The ``baseline`` arm runs the same command from a git worktree of ``--baseline``
(``PYTHONPATH`` points at it; same virtual environment). The clock is this process's wall clock:

- the moment each of the command's notes appears on its standard error (``starting Ray``, ``Ray
  ready``, ``recording to MLflow``, ``starting N trials``), and when the summary is printed;
- the first epoch's result reaching the driver: the earliest timestamp of an MLflow metric
  point of the study's trial runs (the driver records each result as it arrives);
- the last trial's end: the latest ``datetime_complete`` in the Optuna storage;
- the process's exit.

Reported per arm (medians over ``--repeats``): start (command to first result), the gaps between
the notes, finish (last trial's end to summary, summary to exit).

    .venv/bin/python -m bench.start_finish.measure [--repeats 3] [--baseline COMMIT]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, machine_info, results_file, write_json

NOTES = {"starting_ray": "starting Ray", "ray_ready": "Ray ready", "recording": "recording to MLflow",
         "trials_start": " trials", "summary": "best configuration:"}


def _worktree(commit: str, folder: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=ROOT, check=True,
                   capture_output=True)
    return folder


def _one_run(code: Path, workdir: Path) -> dict[str, float]:
    import optuna
    from mlflow import MlflowClient

    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "orchestrator.cli", "launch", str(ROOT / "examples" / "digits.yaml"),
               "--trials", "4", "--max-epochs", "3", "--storage", f"sqlite:///{workdir}/optuna.db",
               "--results-dir", str(workdir / "ray")]
    seen: dict[str, float] = {}
    began = time.time()
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    assert process.stdout is not None
    tail = []
    for line in process.stdout:
        now = time.time()
        tail = (tail + [line])[-20:]
        for key, marker in NOTES.items():
            if key not in seen and marker in line and (key != "trials_start" or "starting" in line):
                seen[key] = now
    process.wait()
    exited = time.time()
    assert process.returncode == 0, "".join(tail)
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{workdir}/optuna.db")
    last_end = max(t.datetime_complete.timestamp() for t in study.trials)
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("digits")
    first_result = min(point.timestamp / 1000 for run in client.search_runs([experiment.experiment_id])
                       if run.data.tags.get("stepsize.role") == "trial"
                       for point in client.get_metric_history(run.info.run_id, "val_loss"))
    return {
        "to_starting_ray_s": seen["starting_ray"] - began,
        "ray_start_s": seen["ray_ready"] - seen["starting_ray"],
        "ray_ready_to_recording_s": seen["recording"] - seen["ray_ready"],
        "recording_to_trials_start_s": seen["trials_start"] - seen["recording"],
        "trials_start_to_first_result_s": first_result - seen["trials_start"],
        "start_s": first_result - began,
        "last_trial_end_to_summary_s": seen["summary"] - last_end,
        "summary_to_exit_s": exited - seen["summary"],
        "finish_s": exited - last_end,
        "wall_s": exited - began,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="8de58ae", help="the commit to compare with")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="ssf-"))
    arms = {"current": ROOT, "baseline": _worktree(args.baseline, scratch / "baseline")}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    try:
        for repeat in range(args.repeats):
            for name, code in arms.items():
                workdir = scratch / f"{name}-{repeat}"
                workdir.mkdir()
                rows[name].append(_one_run(code, workdir))
                print(name, repeat, {k: round(v, 2) for k, v in rows[name][-1].items()}, file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(arms["baseline"])], cwd=ROOT, capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rows.items()}
    out = write_json(results_file(__file__, "start_finish.json"),
                     {"machine": machine_info(), "baseline": args.baseline, "repeats": args.repeats,
                      "summary": summary, "rows": rows})
    for name, values in summary.items():
        print(name, {k: round(v, 2) for k, v in values.items()})
    print("written to", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
