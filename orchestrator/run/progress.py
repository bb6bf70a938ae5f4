"""What the terminal shows while a study runs: one live progress line (redrawn every second on a
terminal, a line per finished trial on a file or pipe) and, above it, the first occurrence of
each distinct trial error; the counts behind the line (:class:`SearchProgress`) are kept by the
searcher."""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray.tune import Callback

from orchestrator.run.epoch_budget import EpochLedger
from orchestrator.study.summary import last_line

_NUMBER = re.compile(r"\d+(\.\d+)?(e[-+]?\d+)?")

# A trial's state in Ray Tune's trial list.
_RUNNING, _PENDING = "RUNNING", "PENDING"


@dataclass
class SearchProgress:
    """Running counts the progress view shows; kept by the searcher as trials end."""

    total: int
    resumed: int = 0
    started: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    diverged: int = 0
    over_limit: int = 0  # stopped by a per-trial limit (limits:), counted among pruned or failed
    failed: int = 0
    best_value: float | None = None
    best_number: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    first_result_at: float | None = None
    suggest_seconds: list[float] = field(default_factory=list)  # driver time of each suggest
    epochs: EpochLedger = field(default_factory=EpochLedger)  # epochs trained, against budget.epochs
    trials_capped: bool = True  # False when the epoch budget alone bounds the trials (no budget.trials)
    rung_model_epoch: int | None = None  # the rung the rung model last proposed from (None: not yet)

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class FinishEstimate:
    """When the study will end, from the pace at which trials finish, smoothed so that the shown
    time left counts down steadily instead of jumping with each trial that ends.

    The pace is the training time so far (from the first result) per finished trial; each trial
    that ends moves the estimated end ``weight`` of the way toward what the latest pace says. With
    an epoch budget (``budget.epochs``) the end is also reckoned from the time per epoch trained,
    and the sooner of the two is taken.
    """

    def __init__(self, weight: float = 0.3, min_finished: int = 2):
        self._weight = weight
        self._min_finished = min_finished
        self._end: float | None = None
        self._seen = 0

    def update(self, progress: SearchProgress, now: float) -> None:
        """Call when trials may have finished."""
        finished = progress.finished
        if finished == self._seen or progress.first_result_at is None:
            return
        self._seen = finished
        if finished < min(self._min_finished, progress.total):
            return
        pace = (now - progress.first_result_at) / finished
        target = now + pace * (progress.total - finished)
        epochs = progress.epochs
        if epochs.budget is not None and epochs.run:
            by_epochs = now + (now - progress.first_result_at) / epochs.run * max(0, epochs.budget - epochs.spent)
            target = min(target, by_epochs) if progress.trials_capped else by_epochs
        self._end = target if self._end is None else self._end + self._weight * (target - self._end)

    def remaining(self, progress: SearchProgress, now: float) -> float | None:
        """Seconds left, or None before there is anything to go by."""
        if self._end is None:
            return None
        if progress.finished >= progress.total:
            return 0.0
        return max(0.0, self._end - now)


def progress_line(progress: SearchProgress, metric: str, now: float | None = None, *,
                  running: int | None = None, starting: int = 0, remaining: float | None = None) -> str:
    """One line: trials done / running / pruned, epochs against the epoch budget when the study
    has one, best so far, elapsed and estimated remaining. ``running`` is the count Ray Tune
    reports (the searcher's own count when None)."""
    now = time.monotonic() if now is None else now
    total = f"/{progress.total}" if progress.trials_capped else ""  # no trial count: the epoch budget bounds them
    parts = [
        f"trials {progress.finished}{total} done",
        f"{progress.running if running is None else running} running",
    ]
    if starting:
        parts.append(f"{starting} starting")
    parts += [f"{progress.complete} complete", f"{progress.pruned} pruned"]
    if progress.diverged:
        parts.append(f"{progress.diverged} diverged")
    if progress.failed:
        parts.append(f"{progress.failed} failed")
    if progress.epochs.budget is not None:
        parts.append(f"epochs {progress.epochs.spent}/{progress.epochs.budget}")
    if progress.rung_model_epoch is not None:
        parts.append(f"rung model at epoch {progress.rung_model_epoch}")
    if progress.best_value is not None:
        parts.append(f"best {metric} {progress.best_value:.4g} (trial {progress.best_number})")
    parts.append(f"elapsed {format_duration(now - progress.started_at)}")
    if remaining is not None:
        parts.append(f"eta {format_duration(remaining)}")
    return " | ".join(parts)


class ProgressView(Callback):
    """The live view: on a terminal one status line redrawn every second by a clock thread (so
    the elapsed time ticks while trials train); on a file or pipe a line each time a trial ends.
    :meth:`show` prints a message above the line (trial errors, notes)."""

    def __init__(self, progress: SearchProgress, metric: str, stream: TextIO = sys.stderr, interval_s: float = 1.0):
        self._progress = progress
        self._metric = metric
        self._stream = stream
        self._interval_s = interval_s
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._estimate = FinishEstimate()
        self._running: int | None = None
        self._starting = 0
        self._last_finished = -1
        self._drawn = False
        self._stop = threading.Event()
        self._clock: threading.Thread | None = None

    # Tune pickles its run configuration, callbacks included, into the experiment folder; the
    # view's lock, clock and stream stay out (an unpickled copy shows nothing).
    def __getstate__(self) -> dict[str, Any]:
        return {"_metric": self._metric}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(SearchProgress(total=0), state["_metric"], stream=_Nowhere())  # type: ignore[misc]

    # -- Ray Tune callback interface -------------------------------------------------------
    def setup(self, **info: Any) -> None:
        self.start()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._count(trials)  # drawn by the clock: Tune's loop steps ten times a second

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._count(trials)
        self.draw()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._count(trials)
        self.draw()

    def _count(self, trials: list) -> None:
        self._running = sum(1 for t in trials if t.status == _RUNNING)
        self._starting = sum(1 for t in trials if t.status == _PENDING)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    # -- drawing ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the clock thread (on a terminal); idempotent."""
        if self._tty and self._clock is None:
            self._clock = threading.Thread(target=self._tick, name="stepsize-progress", daemon=True)
            self._clock.start()

    def close(self) -> None:
        """Stop the clock and leave the last line on the screen (once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._running, self._starting = None, 0  # the searcher's count: Tune's list is not redrawn after the end
        self.draw(final=True)

    def show(self, text: str) -> None:
        """Print ``text`` on its own line above the progress line."""
        with self._lock:
            if self._tty and self._drawn:
                self._stream.write("\r\033[K")
            self._stream.write(text + "\n")
            self._drawn = False
            self._stream.flush()
        if not self._stop.is_set():  # after close, the last line is already on the screen
            self.draw(force=True)

    def draw(self, final: bool = False, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self._estimate.update(self._progress, now)
            finished = self._progress.finished
            if self._tty:
                if not final and self._stop.is_set():
                    return
                self._stream.write("\r\033[K" + self._line(now) + ("\n" if final else ""))
                self._drawn = not final
            elif finished != self._last_finished or final:
                if final and finished == self._last_finished:
                    return
                self._stream.write(self._line(now) + "\n")
            else:
                return
            self._stream.flush()
            self._last_finished = finished

    def _line(self, now: float) -> str:
        # Tune's count is the truth while trials start; a trial Tune is ending may still show as
        # running there after the searcher counted it finished.
        running = self._progress.running if self._running is None else min(self._running, self._progress.running)
        return progress_line(self._progress, self._metric, now, running=running, starting=self._starting,
                             remaining=self._estimate.remaining(self._progress, now))

    def _tick(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.draw()


class _Nowhere:
    """A stream that drops what is written (for a view restored from Tune's state)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class TrialErrorLog:
    """Shows the first trial that fails with each distinct error (its type and message), where
    its full text is, and counts the rest."""

    def __init__(self, study_name: str, show: Any):
        self._study_name = study_name
        self._show = show
        self.distinct: dict[str, int] = {}  # the first error's last line -> trials that failed with its kind
        self._first: dict[str, str] = {}  # the error with its numbers masked -> its first text

    def __call__(self, number: int, error: str) -> None:
        line = last_line(error)
        first = self._first.setdefault(_NUMBER.sub("#", line), line)  # "lr 0.3 too high" ~ "lr 0.5 too high"
        self.distinct[first] = self.distinct.get(first, 0) + 1
        if self.distinct[first] == 1:
            self._show(f"trial {number} failed: {line[:300]} (the first trial with this error; full text: "
                       f"stepsize status {self._study_name} --errors)")

    def summary(self) -> str | None:
        """One line on the errors seen, or None when no trial failed."""
        if not self.distinct:
            return None
        failed = sum(self.distinct.values())
        kinds = len(self.distinct)
        return f"{failed} trial{'s' if failed != 1 else ''} failed with {kinds} distinct error{'s' if kinds != 1 else ''}"
