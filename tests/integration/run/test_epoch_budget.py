"""``budget.epochs`` end to end: the real CLI on real Ray, SQLite and MLflow in a temporary folder.
A study runs to its epoch budget and ends with exit 0, every trial told; a resume says it is at its
budget and runs nothing; ``--epoch-budget`` on resume extends it. (Charging and stopping in
process: tests/unit/run/test_epoch_budget.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import yaml
from optuna.trial import TrialState

from orchestrator.keys import TrialAttr
from tests.conftest import ROOT

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]
BUDGET, CONCURRENCY = 24, 2


def _cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(STEPSIZE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _trials(storage):
    return optuna.load_study(study_name="eb", storage=storage).get_trials(deepcopy=False)


def _check_told(trials, budget):
    charged = [t.user_attrs[TrialAttr.CHARGED_EPOCHS] for t in trials]
    assert budget <= sum(charged) <= budget + CONCURRENCY, charged  # + the epochs in flight when it was reached
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    for trial in trials:  # no retry and no resumed trial: each epoch charged was told once
        assert trial.user_attrs[TrialAttr.CHARGED_EPOCHS] == len(trial.intermediate_values)
    return sum(charged)


def test_a_study_runs_to_its_epoch_budget_and_resume_is_then_at_its_budget(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study_file = tmp_path / "eb.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "eb",
        "workload": "tests.workloads:quadratic",
        "search_space": "lr_only",
        "budget": {"epochs": BUDGET, "max_epochs": 4},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "concurrency": CONCURRENCY,
        "storage": storage,
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "results_dir": str(tmp_path / "ray"),
    }))
    done = _cli(["launch", str(study_file)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _trials(storage)
    spent = _check_told(trials, BUDGET)
    assert len(trials) < BUDGET  # the epochs ended it, not the trial count they bound
    assert any(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        reason = trial.user_attrs[TrialAttr.STOP_REASON]
        if "epoch budget" in reason:
            assert trial.state == TrialState.PRUNED
            assert reason == f"stopped at epoch {len(trial.intermediate_values)} when the epoch budget was reached"
    assert f"; epochs {spent}/{BUDGET}" in done.stdout
    assert f"epochs {spent}/{BUDGET}" in done.stderr  # the progress view's last line

    again = _cli(["resume", "eb", "--storage", storage], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"reached its budget of {BUDGET} epochs ({spent} trained)" in again.stderr
    assert "--epoch-budget N" in again.stderr and "starting Ray" not in again.stderr
    assert len(_trials(storage)) == len(trials)

    refused = _cli(["resume", "eb", "--storage", storage, "--epoch-budget", str(spent)], tmp_path)
    assert refused.returncode == 2 and "`--epoch-budget`" in refused.stderr and f"above the {spent} epochs" in refused.stderr

    more = _cli(["resume", "eb", "--storage", storage, "--epoch-budget", "36", "--quiet"], tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    extended = _trials(storage)
    assert len(extended) > len(trials)  # the trial count the epochs bound followed them
    _check_told(extended, 36)
