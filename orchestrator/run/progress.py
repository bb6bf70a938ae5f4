"""The live progress view shown during ``stepsize launch`` in place of Ray's raw tables."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback

from orchestrator.run.searcher import SearchProgress


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(progress: SearchProgress, metric: str, now: float | None = None) -> str:
    """One line: trials done / running / pruned, best so far, elapsed and estimated remaining."""
    now = time.monotonic() if now is None else now
    elapsed = now - progress.started_at
    parts = [
        f"trials {progress.finished}/{progress.total} done",
        f"{progress.running} running",
        f"{progress.complete} complete",
        f"{progress.pruned} pruned",
    ]
    if progress.diverged:
        parts.append(f"{progress.diverged} diverged")
    if progress.failed:
        parts.append(f"{progress.failed} failed")
    if progress.best_value is not None:
        parts.append(f"best {metric} {progress.best_value:.4g} (trial {progress.best_number})")
    parts.append(f"elapsed {format_duration(elapsed)}")
    if progress.finished and progress.first_result_at is not None:
        training = now - progress.first_result_at  # start-up (Ray, first workers) left out
        remaining = training / progress.finished * (progress.total - progress.finished)
        parts.append(f"eta {format_duration(remaining)}")
    return " | ".join(parts)


class ProgressView(Callback):
    """Redraws one status line on a terminal (each second), or prints a line each time a trial
    ends when the output is a file or pipe."""

    def __init__(self, progress: SearchProgress, metric: str, stream: TextIO = sys.stderr, interval_s: float = 1.0):
        self._progress = progress
        self._metric = metric
        self._stream = stream
        self._interval_s = interval_s
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_finished = -1

    def on_step(self, iteration: int, trials: list, **info: Any) -> None:
        self.draw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.draw()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.draw()

    def draw(self, final: bool = False) -> None:
        now = time.monotonic()
        finished = self._progress.finished
        if self._tty:
            if not final and now - self._last_draw < self._interval_s:
                return
            line = progress_line(self._progress, self._metric, now)
            self._stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            if finished == self._last_finished:
                return
            self._stream.write(progress_line(self._progress, self._metric, now) + "\n")
        self._stream.flush()
        self._last_draw, self._last_finished = now, finished

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.draw(final=True)
