"""A workload's own ``sys.exit(N)`` ends its trial as failed with the code (a result, not a dead
worker for Ray to retry); ``sys.exit()`` / ``sys.exit(0)`` ends it as a return would; the
``SystemExit(0)`` Ray Tune raises inside ``report`` to stop a trial still reaches Ray Tune."""

from __future__ import annotations

import pytest

from orchestrator.keys import Result
from orchestrator.trial.runner import TrialRuntime, run_trial


def _runtime(**options) -> TrialRuntime:
    return TrialRuntime(workload="tests.workloads:exits_above_lr", max_epochs=3, seed=0, cpus=1, gpu=0,
                        options=options)


def _run(runtime: TrialRuntime, sink=None) -> list[dict]:
    reports: list[dict] = []
    run_trial({"learning_rate": 0.01, "_trial_number": 4}, runtime,
              sink or (lambda metrics, folder=None: reports.append(metrics)))
    return reports


def test_sys_exit_3_is_a_failed_result_naming_the_code():
    reports = _run(_runtime(exit_code=3))
    assert [r[Result.EPOCH] for r in reports] == [1, 1]
    last = reports[-1]
    assert last[Result.TRIAL_FAILED] == 1.0
    assert last[Result.ERROR].strip().splitlines()[-1].startswith("SystemExit: the workload called sys.exit(3)")


@pytest.mark.parametrize("code", [0, None])
def test_sys_exit_0_or_none_ends_the_trial_as_a_return(code):
    reports = _run(_runtime(exit_code=code))
    assert len(reports) == 1 and Result.TRIAL_FAILED not in reports[0]


def test_the_system_exit_ray_tune_raises_inside_report_propagates():
    def tune_stops(metrics, folder=None):
        raise SystemExit(0)  # what ray.tune.report does when the scheduler stopped the trial

    with pytest.raises(SystemExit) as caught:
        _run(_runtime(exit_lr=1.0), sink=tune_stops)  # the workload itself never exits
    assert caught.value.code == 0


def test_even_a_nonzero_system_exit_from_report_is_left_to_ray_tune():
    def sink_exits(metrics, folder=None):
        raise SystemExit(5)

    with pytest.raises(SystemExit):
        _run(_runtime(exit_lr=1.0), sink=sink_exits)
