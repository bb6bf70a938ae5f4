"""The live view: a clock that ticks without trial events, a steady time-left estimate, the true
running count and the first occurrence of each trial error."""

from __future__ import annotations

import io
import time

from orchestrator.run.progress import FinishEstimate, ProgressView, SearchProgress, TrialErrorLog, progress_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_clock_ticks_every_second_without_any_trial_event():
    progress = SearchProgress(total=4)
    screen = Terminal()
    view = ProgressView(progress, "val_loss", screen, interval_s=0.2)
    view.start()
    time.sleep(1.5)
    view.close()
    frames = [frame for frame in screen.getvalue().split("\r\033[K") if frame]
    assert len(frames) >= 4, "redrawn by its clock, not only on trial events"
    assert frames[-1].endswith("\n")  # the last line stays on the screen


def test_shown_messages_go_above_the_line_and_the_line_comes_back():
    progress = SearchProgress(total=2)
    screen = Terminal()
    view = ProgressView(progress, "val_loss", screen)
    view.draw(force=True)
    view.show("trial 0 failed: ValueError: x")
    text = screen.getvalue()
    assert "\r\033[Ktrial 0 failed: ValueError: x\n" in text
    assert text.rstrip().endswith("elapsed 0:00")


def test_running_count_is_tunes_not_the_number_suggested():
    progress = SearchProgress(total=8, started=2, running=2)
    view = ProgressView(progress, "val_loss", io.StringIO())

    class Trial:
        def __init__(self, status):
            self.status = status

    view.on_step_end(0, [Trial("RUNNING"), Trial("PENDING")])
    line = view._line(time.monotonic())
    assert "| 1 running | 1 starting |" in line


def test_the_time_left_counts_down_steadily_when_trials_end_unevenly():
    progress = SearchProgress(total=20, started_at=0.0)
    progress.first_result_at = 0.0
    estimate = FinishEstimate()
    # Pruned trials end in bursts early, complete ones slowly later: the raw pace swings 4x.
    ends = [1, 1.5, 2, 10, 11, 12, 30, 32, 34, 50]
    shown = []
    for finished, now in enumerate(ends, start=1):
        progress.pruned = finished
        estimate.update(progress, now)
        left = estimate.remaining(progress, now)
        if left is not None:
            shown.append(now + left)  # when the study is said to end
    raw = [now + now / f * (20 - f) for f, now in enumerate(ends, start=1) if f >= 2]
    jumps = [abs(b - a) for a, b in zip(shown, shown[1:])]
    raw_jumps = [abs(b - a) for a, b in zip(raw, raw[1:])]
    assert max(jumps) < 0.5 * max(raw_jumps)
    assert estimate.remaining(progress, 1e9) == 0.0  # never negative


def test_no_estimate_before_two_trials_ended():
    progress = SearchProgress(total=10, started_at=0.0)
    progress.first_result_at = 0.0
    progress.complete = 1
    estimate = FinishEstimate()
    estimate.update(progress, 5.0)
    assert estimate.remaining(progress, 5.0) is None
    assert "eta" not in progress_line(progress, "val_loss", 5.0, remaining=None)


def test_each_kind_of_error_is_shown_once_with_where_its_text_is():
    shown: list[str] = []
    log = TrialErrorLog("study-a", shown.append)
    log(3, "Traceback (most recent call last):\n  ...\nValueError: learning rate 0.3 is too high")
    log(5, "Traceback (most recent call last):\n  ...\nValueError: learning rate 0.75 is too high")
    log(6, "RuntimeError: cannot open /data/x.csv")
    assert shown == [
        "trial 3 failed: ValueError: learning rate 0.3 is too high (the first trial with this error; "
        "full text: stepsize status study-a --errors)",
        "trial 6 failed: RuntimeError: cannot open /data/x.csv (the first trial with this error; "
        "full text: stepsize status study-a --errors)",
    ]
    assert log.distinct == {"ValueError: learning rate 0.3 is too high": 2, "RuntimeError: cannot open /data/x.csv": 1}
    assert log.summary() == "3 trials failed with 2 distinct errors"


def test_a_run_without_a_completed_trial_is_a_failed_study(tmp_path):
    from types import SimpleNamespace

    import pytest

    from orchestrator.errors import StudyFailed, StudyInterrupted
    from orchestrator.run.launch import Console, RunOutcome, _judge
    from orchestrator.study.summary import StudySummary
    from tests.conftest import study_spec

    spec = study_spec(tmp_path, name="short", budget={"trials": 4, "max_epochs": 3, "time_limit": "10s"})
    searcher = SimpleNamespace(contract_error=None, interrupted=False)
    errors = TrialErrorLog("short", print)
    pruned = StudySummary("short", "val_loss", "min", {"PRUNED": 4})
    with pytest.raises(StudyFailed) as caught:
        _judge(RunOutcome(pruned), spec, searcher, errors)
    assert str(caught.value) == (
        "study short: no trial completed (4 pruned), so it has no best configuration. Give trials more time "
        "(budget.time_limit) or more trials (budget.trials), or resume it with more trials: stepsize resume short "
        f"--storage sqlite:///{tmp_path}/optuna.db --trials 8")
    assert caught.value.exit_code == 1 and caught.value.summary is pruned
    searcher.interrupted = True
    with pytest.raises(StudyInterrupted) as caught:
        _judge(RunOutcome(StudySummary("short", "val_loss", "min", {"COMPLETE": 1, "RUNNING": 2}), left_running=2),
               spec, searcher, errors)
    assert caught.value.exit_code == 130
    searcher.interrupted = False  # a caller's stopper ended the run: a note, and the outcome
    cut = RunOutcome(StudySummary("short", "val_loss", "min", {"COMPLETE": 1, "RUNNING": 2}), left_running=2)
    notes = io.StringIO()
    assert _judge(cut, spec, searcher, errors, Console(stream=notes)) is cut
    assert notes.getvalue().startswith("stopped with 2 trials unfinished; continue the study with: stepsize resume")
    assert str(caught.value).startswith("study short interrupted: 1 trials finished, 2 left unfinished")
