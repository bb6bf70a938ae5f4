"""The per-trial watchdog: a breach stops a Python loop at once (soft), a thread stuck in C is
reported by the watchdog itself (hard), and the messages say which limit and by how much."""

from __future__ import annotations

import threading
import time

from orchestrator.errors import TrialLimitExceeded
from orchestrator.keys import Result
from orchestrator.trial.limits import TrialLimits, Watchdog, format_bytes, format_seconds, process_memory
from orchestrator.trial.runner import TrialRuntime, run_trial


def test_a_python_loop_over_its_time_limit_is_stopped_after_the_limit_and_not_before():
    watchdog = Watchdog(3, TrialLimits(time_s=0.5)).start()
    began = time.monotonic()
    try:
        while time.monotonic() - began < 10:
            sum(range(100))
        raise AssertionError("not stopped")
    except TrialLimitExceeded:
        stopped = time.monotonic() - began
    watchdog.finish()
    assert 0.5 <= stopped < 9.0  # how soon after the limit: bench/limits (not timed here)
    assert watchdog.breach is not None and watchdog.breach.reason == "trial 3 exceeded its time limit of 0.5 s"


def test_a_thread_stuck_in_c_is_reported_by_the_watchdog_after_the_grace():
    seen: list[tuple[float, str]] = []
    began = time.monotonic()

    def stuck() -> None:
        watchdog = Watchdog(4, TrialLimits(time_s=0.3), grace=0.5,
                            on_stuck=lambda breach: seen.append((time.monotonic() - began, breach.reason))).start()
        try:
            time.sleep(6.0)  # in C: the watchdog's exception waits until the sleep ends
        except TrialLimitExceeded:
            pass
        watchdog.finish()

    thread = threading.Thread(target=stuck)
    thread.start()
    thread.join()
    assert len(seen) == 1 and 0.8 <= seen[0][0] < 5.5  # reported while the thread is still stuck
    assert seen[0][1] == "trial 4 exceeded its time limit of 0.3 s"


def test_memory_over_the_limit_names_the_size_and_the_limit():
    limit = process_memory() + 100 * 2**20
    watchdog = Watchdog(7, TrialLimits(memory_bytes=limit), interval=0.05).start()
    hoard = []
    try:
        for _ in range(100):
            hoard.append(bytearray(20 * 2**20))
            time.sleep(0.02)
        raise AssertionError("not stopped")
    except TrialLimitExceeded:
        pass
    watchdog.finish()
    held = process_memory()
    hoard.clear()
    assert watchdog.breach is not None and watchdog.breach.kind == "memory"
    assert watchdog.breach.reason.startswith("trial 7 used ")
    assert watchdog.breach.reason.endswith(f"above its limit of {format_bytes(limit)}")
    assert limit < watchdog.breach.memory_bytes <= held + 20 * 2**20  # the size it saw, over the limit


def test_no_limit_starts_no_thread_and_finish_is_idempotent():
    watchdog = Watchdog(1, TrialLimits()).start()
    watchdog.finish()
    watchdog.finish()
    assert watchdog.breach is None and watchdog.claim() and not watchdog.claim()


def test_formats():
    assert format_bytes(600 * 2**20) == "600 MiB"
    assert format_bytes(1.3 * 2**30) == "1.3 GiB"
    assert format_bytes(2**30) == "1 GiB"
    assert format_seconds(30) == "30 s" and format_seconds(1800) == "30 min" and format_seconds(7200) == "2 h"


def test_memory_fraction_is_a_share_of_the_node():
    import psutil

    assert TrialLimits(memory_fraction=0.5).memory_limit() == int(psutil.virtual_memory().total * 0.5)


def test_run_trial_reports_the_breach_as_a_failed_over_limit_result():
    reports: list[dict] = []
    runtime = TrialRuntime(workload="tests.workloads:sleeps_each_epoch", max_epochs=50, seed=0, cpus=1, gpu=0,
                           options={"epoch_s": 0.2}, limits=TrialLimits(time_s=3.0))
    run_trial({"learning_rate": 0.01, "_trial_number": 5}, runtime, lambda metrics, folder=None: reports.append(metrics))
    last = reports[-1]
    assert last[Result.LIMIT_EXCEEDED] == 1.0 and last[Result.TRIAL_FAILED] == 1.0
    assert last[Result.LIMIT_REASON] == "trial 5 exceeded its time limit of 3 s"
    assert not last[Result.LIMIT_EXIT] and 1 <= last[Result.EPOCH] < 50  # stopped, not run to its 50 epochs
    assert sum(1 for r in reports if r.get(Result.LIMIT_EXCEEDED)) == 1
