"""Resume and fault tolerance on real Ray and SQLite: launch refuses a taken name and points to
resume or --new; resume extends a finished study; a workload error is FAIL without a retry unless
asked; a worker killed mid-trial is retried from its last checkpoint; one driver per study; the
scheduler's rungs are rebuilt from recorded values."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from orchestrator import api
from orchestrator.resume import StudyBusyError, claim_driver
from orchestrator.schedulers import ResumableASHA, ResumableMedianStopping, seed_scheduler
from orchestrator.study import StudyExistsError, load_study, make_storage
from orchestrator.tracking import naming
from tests.conftest import study_spec

ROOT = Path(__file__).resolve().parent.parent
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
    assert len([r for r in runs if r.data.tags.get(naming.ROLE_TAG) == "study"]) == 1  # the parent was reused
    assert sorted(int(r.data.tags[naming.TRIAL_NUMBER_TAG]) for r in runs
                  if r.data.tags.get(naming.ROLE_TAG) == "trial") == [0, 1, 2, 3, 4]
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5, "resume repeated a configuration"

    fresh = api.launch(spec, quiet=True, new=True)
    assert fresh.name == "again-2" and fresh.total == 3
    assert api.status("again", spec.storage).total == 5


def test_cli_resume_errors_are_one_paragraph_with_exit_code_2(tmp_path):
    missing = _cli(["resume", "nothing-here", "--storage", f"sqlite:///{tmp_path}/none.db"], tmp_path)
    assert missing.returncode == 2 and "no study named 'nothing-here'" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "none.db").exists()


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


def test_a_second_live_driver_on_the_same_study_is_refused(tmp_path):
    study = optuna.create_study(study_name="busy", storage=make_storage(f"sqlite:///{tmp_path}/o.db"))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        study.set_user_attr("stepsize.driver", {"host": os.uname().nodename, "pid": sleeper.pid})
        with pytest.raises(StudyBusyError, match=str(sleeper.pid)):
            claim_driver(study)
    finally:
        sleeper.kill()
        sleeper.wait()
    time.sleep(0.1)
    claim_driver(study)  # the process is gone: this one takes over
    assert study.user_attrs["stepsize.driver"]["pid"] == os.getpid()


class _Trial:
    def __init__(self, number: int):
        self.trial_id = f"tune-{number}-{time.monotonic_ns()}"
        self.config = {"_trial_number": number}


def test_asha_rungs_are_rebuilt_from_recorded_values():
    curves = {n: {1: 1.0 + n, 2: 0.9 + n, 3: 0.8 + n, 4: 0.7 + n} for n in range(6)}
    asha = ResumableASHA(time_attr="epoch", metric="val_loss", mode="min", max_t=8, grace_period=1, reduction_factor=2)
    seed_scheduler(asha, curves)
    newcomer = _Trial(10)
    asha.on_trial_add(None, newcomer)
    # Worse than most recorded trials at the first rung: stopped at once, as without the restart.
    assert asha.on_trial_result(None, newcomer, {"epoch": 1, "val_loss": 4.5}) == TrialScheduler.STOP
    good = _Trial(11)
    asha.on_trial_add(None, good)
    assert asha.on_trial_result(None, good, {"epoch": 1, "val_loss": 0.5}) == TrialScheduler.CONTINUE
    # A resumed trial (same Optuna number, new Tune trial) is not judged twice at rungs it passed.
    resumed = _Trial(0)
    asha.on_trial_add(None, resumed)
    assert asha.on_trial_result(None, resumed, {"epoch": 4, "val_loss": 0.7}) == TrialScheduler.CONTINUE


class _Controller:
    """What the median rule asks of Tune's controller when it has too few samples."""

    def get_live_trials(self) -> list:
        return []


def test_median_rule_history_is_rebuilt_and_a_resumed_trial_keeps_its_curve():
    curves = {n: {e: float(n) for e in range(1, 5)} for n in range(5)}
    rule = ResumableMedianStopping(time_attr="epoch", metric="val_loss", mode="min", grace_period=1,
                                   min_samples_required=3)
    seed_scheduler(rule, curves)
    newcomer = _Trial(9)
    rule.on_trial_add(None, newcomer)
    assert rule.on_trial_result(None, newcomer, {"epoch": 2, "val_loss": 10.0}) == TrialScheduler.STOP
    resumed = _Trial(0)
    rule.on_trial_add(None, resumed)
    assert len(rule._results[resumed]) == 4  # its own epochs 1-4, no longer a separate history entry
    assert rule.on_trial_result(_Controller(), resumed, {"epoch": 5, "val_loss": 0.0}) == TrialScheduler.CONTINUE
