"""A training script as a trial, without Ray: the real script runs as a subprocess and its reports
reach the trial's sink the way Ray Tune's ``report`` would receive them."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from orchestrator.keys import Config, Result
from orchestrator.spec import spec_from_mapping
from orchestrator.trial.runner import TrialRuntime, run_trial
from tests.conftest import ROOT

SCRIPT = str(ROOT / "tests" / "scripts" / "argparse_train.py")


def _runtime(tmp_path: Path, *args: str, **workload) -> TrialRuntime:
    spec = spec_from_mapping({
        "name": "s",
        "workload": {"script": SCRIPT, "args": list(args), "flags": {"max_epochs": "--epochs"}, **workload},
        "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
                         "batch_size": {"type": "categorical", "choices": [16, 32]}},
        "budget": {"trials": 2, "max_epochs": 4},
        "results_dir": str(tmp_path / "ray"),
    })
    return TrialRuntime.from_spec(spec)


class Sink:
    """Collects reports; keeps a copy of each checkpoint folder (Tune copies it into storage)."""

    def __init__(self, tmp_path: Path, stop_at: int | None = None):
        self.reports: list[dict] = []
        self.folders: list[Path] = []
        self.tmp_path, self.stop_at = tmp_path, stop_at

    def __call__(self, metrics: dict, folder: str | None = None) -> None:
        self.reports.append(metrics)
        if folder is not None:
            kept = self.tmp_path / f"ckpt-{len(self.reports)}"
            shutil.copytree(folder, kept)
            self.folders.append(kept)
        if self.stop_at is not None and metrics.get(Result.EPOCH) == self.stop_at:
            raise SystemExit(0)  # what Ray Tune's report does in a trial the scheduler stopped


def _config(lr: float = 0.1, number: int = 0) -> dict:
    return {"learning_rate": lr, "batch_size": 16, Config.TRIAL_NUMBER: number}


def _pids(folder: Path) -> list[int]:
    return [int(p.stem) for p in folder.glob("*.pid")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_each_epoch_reaches_the_trial_with_its_checkpoint_and_the_flags_reach_the_script(tmp_path):
    sink = Sink(tmp_path)
    run_trial(_config(lr=0.1), _runtime(tmp_path, "--pid_dir", str(tmp_path)), sink, checkpointing=True)
    assert [r[Result.EPOCH] for r in sink.reports] == [1, 2, 3, 4]  # --epochs came from max_epochs
    assert sink.reports[-1]["batch_size"] == 16.0 and sink.reports[-1]["val_loss"] == pytest.approx(0.25)
    assert all((folder / "progress.json").is_file() and (folder / "stepsize.json").is_file() for folder in sink.folders)
    assert not any(_alive(pid) for pid in _pids(tmp_path))


def test_a_trial_resumed_from_its_checkpoint_continues_after_that_epoch(tmp_path):
    first = Sink(tmp_path / "a", stop_at=2)
    (tmp_path / "a").mkdir()
    with pytest.raises(SystemExit):
        run_trial(_config(), _runtime(tmp_path), first, checkpointing=True)
    again = Sink(tmp_path / "b")
    (tmp_path / "b").mkdir()
    run_trial(_config(), _runtime(tmp_path), again, restore_from=str(first.folders[-1]), checkpointing=True)
    assert [r[Result.EPOCH] for r in again.reports] == [3, 4]


def test_a_stopped_trial_ends_its_script_within_seconds(tmp_path):
    sink = Sink(tmp_path, stop_at=1)
    with pytest.raises(SystemExit):
        run_trial(_config(), _runtime(tmp_path, "--pid_dir", str(tmp_path), "--sleep", "30"), sink)
    stopped = time.monotonic()
    [pid] = _pids(tmp_path)
    while _alive(pid) and time.monotonic() - stopped < 10:
        time.sleep(0.05)
    assert not _alive(pid), "the script outlived its stopped trial"
    assert time.monotonic() - stopped < 1.0  # run_trial returned only after the script was gone


def test_printed_report_lines_work_without_the_api(tmp_path):
    sink = Sink(tmp_path)
    run_trial(_config(), _runtime(tmp_path, "--protocol", "line"), sink)
    assert [r[Result.EPOCH] for r in sink.reports] == [1, 2, 3, 4]


def test_a_nan_train_loss_stops_the_trial_as_diverged_and_the_script_with_it(tmp_path):
    sink = Sink(tmp_path)
    run_trial(_config(), _runtime(tmp_path, "--nan_at", "2", "--pid_dir", str(tmp_path), "--sleep", "0.2"), sink)
    assert sink.reports[-1][Result.DIVERGED] == 1.0 and sink.reports[-1][Result.EPOCH] == 2
    assert not any(_alive(pid) for pid in _pids(tmp_path))


@pytest.mark.parametrize("args, last_line", [
    (("--exit_code_at", "2", "3"), "exited with code 3 after epoch 1: giving up in epoch 2"),
    (("--fail_above_lr", "0.05"), "exited with code 1 after epoch 0: learning rate 0.1 is above 0.05: refusing to train"),
])
def test_a_script_that_exits_non_zero_fails_its_trial_with_its_last_lines(tmp_path, args, last_line):
    sink = Sink(tmp_path)
    run_trial(_config(), _runtime(tmp_path, *args), sink)
    failed = sink.reports[-1]
    assert failed[Result.TRIAL_FAILED] == 1.0
    error = failed[Result.ERROR]
    assert error.strip().splitlines()[-1].endswith(f"script {SCRIPT} {last_line}")
    assert "the script's last lines (script-output.log in the trial's folder has all):" in error


def test_a_script_that_exits_without_reporting_fails_its_trial_saying_how_to_report(tmp_path):
    sink = Sink(tmp_path)
    run_trial(_config(), _runtime(tmp_path, "--protocol", "none"), sink)
    error = sink.reports[-1][Result.ERROR].strip().splitlines()[-1]
    assert "exited with code 0 after epoch 0 without reporting an epoch: call report(...)" in error
    assert "STEPSIZE_REPORT" in error


def test_a_missing_interpreter_fails_the_trial_naming_it(tmp_path):
    sink = Sink(tmp_path)
    run_trial(_config(), _runtime(tmp_path, python="/nonexistent/python3"), sink)
    assert "could not be started" in sink.reports[-1][Result.ERROR]
    assert "/nonexistent/python3" in sink.reports[-1][Result.ERROR]
