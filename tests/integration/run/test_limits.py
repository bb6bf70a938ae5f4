"""Per-trial limits end to end through the ``stepsize`` command on real Ray: a trial that hangs in
C and a trial whose memory grows without bound are stopped with the reason, the study finishes its
budget, and no process is left."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from optuna.trial import TrialState

from tests.integration.run.test_user_mistakes import _cli, _study_file, _trials

pytestmark = pytest.mark.integration

SPACE = {"learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": True}}


def _workers_left(before: set[int]) -> list[psutil.Process]:
    time.sleep(1.0)
    return [p for p in psutil.process_iter(["cmdline"])
            if p.pid not in before and "ray::" in " ".join(p.info["cmdline"] or [])]


def _check_over_limit(tmp_path: Path, name: str, words: str, done, started: set[int]) -> list:
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _trials(tmp_path, name)
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials), "the study ran its whole budget"
    over = [t for t in trials if t.user_attrs.get("limit_exceeded")]
    assert over, "some configurations broke the limit"
    for t in over:
        reason = t.user_attrs["stop_reason"]
        assert reason.startswith(f"trial {t.number} ") and words in reason, reason
        assert t.state in (TrialState.PRUNED, TrialState.FAIL)
    assert any(words in line for line in (done.stdout + done.stderr).splitlines()), "the user sees the reason"
    status = _cli(["status", name, "--storage", f"sqlite:///{tmp_path}/optuna.db"], tmp_path)
    assert f"{len(over)} over their limits" in status.stdout + status.stderr, status.stdout + status.stderr
    assert words in status.stdout + status.stderr
    assert not _workers_left(started), "no worker process is left"
    return over


def test_a_hanging_trial_is_stopped_at_its_time_limit(tmp_path):
    started = {p.pid for p in psutil.process_iter()}
    study = _study_file(tmp_path, "hang", "tests.workloads:hangs_above_lr", search_space=SPACE,
                        budget={"trials": 6, "max_epochs": 3}, workload_options={"hang_lr": 0.03},
                        sampler={"name": "random"}, seed=1, limits={"trial_time": "8s"})
    began = time.monotonic()
    done = _cli(["launch", str(study)], tmp_path, timeout=300)
    over = _check_over_limit(tmp_path, "hang", "exceeded its time limit of 8 s", done, started)
    assert all(t.params["learning_rate"] > 0.03 for t in over)
    assert all(t.params["learning_rate"] <= 0.03 for t in _trials(tmp_path, "hang") if t not in over)
    held = [(t.datetime_complete - t.datetime_start).total_seconds() for t in over]
    # From Optuna's ask, so a fresh worker's start counts too: seconds on an idle machine, tens of
    # seconds on a loaded one. Without the limit the trial hangs until the command's 300 s timeout.
    assert all(8 <= seconds < 8 + 90 for seconds in held), held
    print(f"hang study: {time.monotonic() - began:.1f} s, {len(over)} over the limit, ask-to-told {held}")


def test_a_memory_hog_is_stopped_at_its_memory_limit(tmp_path):
    started = {p.pid for p in psutil.process_iter()}
    study = _study_file(tmp_path, "hog", "tests.workloads:hogs_memory_above_lr", search_space=SPACE,
                        budget={"trials": 6, "max_epochs": 3}, workload_options={"hog_lr": 0.03},
                        sampler={"name": "random"}, seed=1, limits={"trial_memory": "900MiB"})
    began = time.monotonic()
    done = _cli(["launch", str(study)], tmp_path, timeout=300)
    over = _check_over_limit(tmp_path, "hog", "above its limit of 900 MiB", done, started)
    assert all(t.params["learning_rate"] > 0.03 for t in over)
    for t in over:
        peak = t.user_attrs["final_metrics"].get("limit_peak_bytes", 0)
        assert 900 * 2**20 < peak < 1300 * 2**20, peak
    print(f"hog study: {time.monotonic() - began:.1f} s, {len(over)} over the limit")
