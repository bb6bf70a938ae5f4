"""When trials and the whole run stop: the epoch budget per trial, a broken objective contract,
and Ctrl-C.

Ray Tune's own Ctrl-C handler is turned off (its public ``TUNE_DISABLE_SIGINT_HANDLER``): the first Ctrl-C asks :class:`StudyStopper` to end the run
(trials that were running stay RUNNING in the storage, for ``stepsize resume``), a second one
quits at once.
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
    """Stops a trial at the epoch budget or at a report without the objective; stops the run when
    the user interrupts it or the objective contract broke. ``extra`` is a caller's Ray Tune
    stopper, consulted too."""

    def __init__(self, searcher: "OptunaStudySearcher", max_epochs: int, extra: Stopper | None = None):
        self._searcher = searcher
        self._max_epochs = max_epochs
        self._extra = extra

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if not self._searcher.check_objective(trial_id, result):
            return True
        if result.get(Result.EPOCH, 0) >= self._max_epochs:
            return True
        return bool(self._extra(trial_id, result)) if self._extra is not None else False

    def stop_all(self) -> bool:
        searcher = self._searcher
        if searcher.interrupted or searcher.contract_error is not None:
            return True
        return bool(self._extra.stop_all()) if self._extra is not None else False


@contextmanager
def interruptible(searcher: "OptunaStudySearcher", note: Callable[[str], None]) -> Iterator[None]:
    """While the run lasts: the first Ctrl-C marks ``searcher`` interrupted (the stopper then ends
    the run at its next step) and says so through ``note``; a second raises KeyboardInterrupt.
    Outside the main thread signals cannot be caught and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def second(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def first(signum: int, frame: Any) -> None:
        searcher.interrupted = True
        signal.signal(signal.SIGINT, second)
        note("interrupted: stopping the running trials (they stay resumable); press Ctrl-C again to quit at once")

    os.environ[TUNE_SIGINT_ENV] = "1"  # read by Tune when the run starts
    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
