"""When trials and the whole run stop: the epoch budget per trial, the study's epoch budget
(``budget.epochs``), a broken objective contract, and Ctrl-C.

Ray Tune's own Ctrl-C handler is turned off (its public ``TUNE_DISABLE_SIGINT_HANDLER``): the
first Ctrl-C asks :class:`StudyStopper` to end the run (trials that were running stay RUNNING in
the storage, for ``stepsize resume``), a second one quits at once.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ray.tune.stopper import Stopper

from orchestrator.keys import Result

TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"

if TYPE_CHECKING:
    from orchestrator.run.searcher import OptunaStudySearcher


class StudyStopper(Stopper):
    """Stops a trial at the epoch budget or at a report without the objective, and every running
    trial at its next result once the study's epochs reach ``budget.epochs`` (each result is
    charged to its trial here, :meth:`OptunaStudySearcher.charge`); stops the run when the user
    interrupts it or the objective contract broke. ``extra`` is a caller's Ray Tune stopper,
    consulted too; ``note`` says (once, from Tune's loop) that an interruption was heard."""

    def __init__(self, searcher: "OptunaStudySearcher", max_epochs: int, extra: Stopper | None = None,
                 note: Callable[[str], None] | None = None):
        self._searcher = searcher
        self._max_epochs = max_epochs
        self._extra = extra
        self._note = note
        self._announced = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if not self._searcher.check_objective(trial_id, result):
            return True
        if self._searcher.charge(trial_id, result):
            return True  # the study's epoch budget is spent
        if result.get(Result.LIMIT_EXCEEDED) and not result.get(Result.LIMIT_EXIT):
            return True  # over a per-trial limit, its thread maybe stuck: Ray Tune ends the trial's worker
        if result.get(Result.EPOCH, 0) >= self._max_epochs:
            return True
        return bool(self._extra(trial_id, result)) if self._extra is not None else False

    def stop_all(self) -> bool:
        searcher = self._searcher
        if searcher.interrupted:
            if not self._announced and self._note is not None:
                self._announced = True
                self._note("interrupted: stopping the running trials (they stay resumable); "
                           "press Ctrl-C again to quit at once")
            return True
        if searcher.contract_error is not None:
            return True
        return bool(self._extra.stop_all()) if self._extra is not None else False

    # Tune pickles its run configuration; the searcher and the note stay out (as the searcher's
    # own state does), an unpickled copy stops nothing early but the epoch budget.
    def __getstate__(self) -> dict[str, Any]:
        return {"_max_epochs": self._max_epochs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from orchestrator.run.searcher import OptunaStudySearcher

        searcher = OptunaStudySearcher.__new__(OptunaStudySearcher)
        searcher.__setstate__({"metric": None, "mode": None})
        self.__init__(searcher, state["_max_epochs"])  # type: ignore[misc]


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interruptible(searcher: "OptunaStudySearcher") -> Iterator[None]:
    """While Tune runs: the first Ctrl-C only marks ``searcher`` interrupted (the stopper ends the
    run at its next step, and says so); a second raises KeyboardInterrupt. The handler does nothing
    else: it may run in the middle of any line of the main thread, a print included. Outside the
    main thread signals cannot be caught and nothing changes."""
    if not _main_thread():
        yield
        return

    def second(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def first(signum: int, frame: Any) -> None:
        searcher.interrupted = True
        signal.signal(signal.SIGINT, second)

    saved_env = os.environ.get(TUNE_SIGINT_ENV)
    os.environ[TUNE_SIGINT_ENV] = "1"  # read by Tune when the run starts
    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if saved_env is None:
            os.environ.pop(TUNE_SIGINT_ENV, None)
        else:
            os.environ[TUNE_SIGINT_ENV] = saved_env


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """While the study's end is written (seconds): a first Ctrl-C is only acknowledged (straight
    to standard error, which is safe inside a signal handler), a second raises KeyboardInterrupt."""
    if not _main_thread():
        yield
        return
    pressed = []

    def handler(signum: int, frame: Any) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)
        os.write(2, b"\nstepsize: writing the study's end (a few seconds); press Ctrl-C again to quit without it\n")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
