"""The driver's faults end to end: two drivers racing for one study through a real PostgreSQL
server (two hosts) — exactly one wins; a stale holder is taken over; a workload that calls
``sys.exit(3)`` ends FAIL once (not retried) with its code in ``stepsize status``; a trial whose
worker died and was retried shows its attempts in ``stepsize status``."""

from __future__ import annotations

import time

import pytest
from optuna.trial import TrialState

from orchestrator import cli
from orchestrator.api import launch
from orchestrator.errors import StudyBusyError, StudyFailed
from orchestrator.spec import spec_from_mapping
from orchestrator.study import driver_lock
from orchestrator.study.driver_lock import active_driver, claim, claim_driver, read_holder, release_driver
from orchestrator.study.storage import create_study, load_study, rdb_storage
from tests.conftest import study_spec
from tests.unit.study.test_driver_lock import race


def test_two_drivers_on_two_hosts_racing_through_postgresql_exactly_one_wins(postgres):
    url = postgres.database("race")
    names = [f"s{i}" for i in range(100)]
    first, second = race(url, names, ("host-a", "host-b"))
    assert not set(first) & set(second)
    assert set(first) | set(second) == set(names)


def test_a_live_holder_on_another_host_is_refused_and_a_stale_one_taken_over(postgres):
    url = postgres.database("stale")
    study = create_study(spec_from_mapping({"name": "shared", "storage": url}))
    claim(url, "shared", host="host-b", pid=777, heartbeat=False)
    with pytest.raises(StudyBusyError) as caught:
        claim_driver(study)
    assert "process 777 on host host-b" in str(caught.value) and "60 s" in str(caught.value)
    assert active_driver(study)["host"] == "host-b"
    table = driver_lock._table()
    with rdb_storage(url).engine.begin() as conn:  # host-b's driver stopped beating 2 minutes ago
        conn.execute(table.update().values(heartbeat=time.time() - 120))
    assert active_driver(study) is None
    claim_driver(study)
    holder = read_holder(url, "shared")
    assert holder.host != "host-b"
    with pytest.raises(StudyBusyError):  # and host-b, coming back, is refused
        claim(url, "shared", host="host-b", pid=777, heartbeat=False)
    release_driver(study)
    assert read_holder(url, "shared") is None


@pytest.mark.usefixtures("ray_local")
def test_a_workload_that_calls_sys_exit_3_fails_once_with_its_code(tmp_path, capsys):
    spec = study_spec(tmp_path, name="exits", workload="tests.workloads:exits_above_lr",
                      workload_options={"exit_code": 3}, budget={"trials": 2, "max_epochs": 3},
                      scheduler="none", failures={"max_retries": 3})
    began = time.monotonic()
    with pytest.raises(StudyFailed):
        launch(spec, quiet=True)
    elapsed = time.monotonic() - began
    study, _ = load_study(spec.name, spec.storage)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    for trial in trials:
        assert "the workload called sys.exit(3)" in trial.user_attrs["error"]
        assert "attempts" not in trial.user_attrs  # not retried
    capsys.readouterr()
    assert cli.main(["status", spec.name, "--storage", spec.storage]) == 0
    out = capsys.readouterr().out
    assert "SystemExit: the workload called sys.exit(3)" in out and "attempts" not in out
    print(f"sys.exit(3) study: {elapsed:.1f} s")


@pytest.mark.usefixtures("ray_local")
def test_a_trial_retried_after_its_worker_died_shows_its_attempts(tmp_path, capsys):
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = study_spec(tmp_path, name="retried", workload="tests.workloads:kills_its_worker_once",
                      workload_options={"marker_dir": str(markers)}, budget={"trials": 1, "max_epochs": 2},
                      scheduler="none", failures={"max_retries": 2})
    launch(spec, quiet=True)
    study, _ = load_study(spec.name, spec.storage)
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["attempts"] == 2
    capsys.readouterr()
    assert cli.main(["status", spec.name, "--storage", spec.storage]) == 0
    assert "trial 0: 2 attempts" in capsys.readouterr().out
