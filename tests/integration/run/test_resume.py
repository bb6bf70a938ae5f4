"""Resume and fault tolerance on real Ray and SQLite: launch refuses a taken name and points to
resume or --new; resume extends a finished study; a workload error is FAIL without a retry unless
asked; a worker killed mid-trial is retried from its last checkpoint. (One driver per study:
tests/unit/study/test_driver_lock.py; the scheduler's rungs rebuilt from recorded values:
tests/unit/run/test_scheduler_seeding.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import api
from orchestrator.errors import StudyExistsError, StudyFailed
from orchestrator.keys import Tag
from orchestrator.study.storage import load_study
from tests.conftest import ROOT, study_spec

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]


def _cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(STEPSIZE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_launch_refuses_a_taken_name_resume_extends_and_new_starts_beside(tmp_path, ray_local):
    spec = study_spec(tmp_path, name="again", budget={"trials": 3, "max_epochs": 2}, scheduler="none")
    api.launch(spec, quiet=True)
    with pytest.raises(StudyExistsError) as refused:
        api.launch(spec, quiet=True)
    assert "stepsize resume again" in str(refused.value) and "--new" in str(refused.value)

    summary = api.resume("again", storage=spec.storage, trials=5, quiet=True)
    assert summary.counts == {"COMPLETE": 5}
    study, stored = load_study("again", spec.storage)
    assert stored.budget.trials == 5
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    experiment = client.get_experiment_by_name("again")
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if r.data.tags.get(Tag.ROLE) == "study"]) == 1  # the parent was reused
    assert sorted(int(r.data.tags[Tag.TRIAL_NUMBER]) for r in runs
                  if r.data.tags.get(Tag.ROLE) == "trial") == [0, 1, 2, 3, 4]
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5, "resume repeated a configuration"

    fresh = api.launch(spec, quiet=True, new=True)
    assert fresh.name == "again-2" and fresh.total == 3
    assert api.status("again", spec.storage).total == 5


def test_resume_trials_must_extend_the_study(tmp_path, ray_local):
    spec = study_spec(tmp_path, name="small", budget={"trials": 2, "max_epochs": 1}, scheduler="none")
    api.launch(spec, quiet=True)
    answer = _cli(["resume", "small", "--storage", spec.storage, "--trials", "2"], tmp_path)
    assert answer.returncode == 2 and "--trials" in answer.stderr and "above the 2 trials" in answer.stderr
    done = _cli(["resume", "small", "--storage", spec.storage], tmp_path)
    assert done.returncode == 0 and "reached its budget of 2 trials" in done.stderr


def test_a_workload_error_is_fail_with_its_text_and_not_retried(tmp_path, ray_local):
    spec = study_spec(tmp_path, name="raises", workload="tests.workloads:raises_in_epoch_two", scheduler="none",
                      workload_options={"marker_dir": str(tmp_path)}, budget={"trials": 2, "max_epochs": 3})
    with pytest.raises(StudyFailed, match=r"every trial failed \(2 of 2\).*RuntimeError: bad batch in trial"):
        api.launch(spec, quiet=True)
    study, _ = load_study("raises", spec.storage)
    for trial in study.trials:
        assert trial.state == TrialState.FAIL
        assert "bad batch in trial" in trial.user_attrs["error"]
        assert trial.user_attrs["stop_reason"] == f"failed: RuntimeError: bad batch in trial {trial.number}"
        assert (tmp_path / f"trial-{trial.number}.attempts").read_text().count("1") == 1


def test_retry_errors_retries_a_raising_workload(tmp_path, ray_local):
    spec = study_spec(tmp_path, name="retried", workload="tests.workloads:raises_in_epoch_two", scheduler="none",
                      workload_options={"marker_dir": str(tmp_path)}, budget={"trials": 1, "max_epochs": 3},
                      failures={"max_retries": 2, "retry_errors": True})
    with pytest.raises(StudyFailed):
        api.launch(spec, quiet=True)
    study, _ = load_study("retried", spec.storage)
    assert study.trials[0].state == TrialState.FAIL
    assert (tmp_path / "trial-0.attempts").read_text().count("1") == 3  # the first run and two retries


def test_a_killed_worker_is_retried_from_its_last_checkpoint(tmp_path, ray_local):
    spec = study_spec(tmp_path, name="dies", workload="tests.workloads:dies_once", scheduler="none",
                      search_space={"learning_rate": {"type": "float", "low": 0.01, "high": 0.05, "log": True}},
                      workload_options={"marker_dir": str(tmp_path)}, budget={"trials": 2, "max_epochs": 5})
    api.launch(spec, quiet=True)
    study, _ = load_study("dies", spec.storage)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE, trial.user_attrs
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4, 5]
        assert (tmp_path / f"trial-{trial.number}.died").exists()
        # The retry continued after epoch 2, the last checkpoint before the worker died.
        assert (tmp_path / f"trial-{trial.number}.starts").read_text().split() == ["0", "2"]
