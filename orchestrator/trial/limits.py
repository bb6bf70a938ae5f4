"""Per-trial limits inside the worker: a watchdog thread that stops a trial over its wall-clock
or memory limit (``limits:`` in the study file).

Twice a second the watchdog reads the trial's elapsed time and the resident memory of the worker
process and its children (and, where torch has a CUDA device in use, its reserved device memory).
On a breach it raises :class:`~orchestrator.errors.TrialLimitExceeded` in the trial's thread
(CPython's ``PyThreadState_SetAsyncExc``), which the trial runner reports. A thread stuck in C
(``time.sleep(10**6)``, a blocking read) never sees it: after ``grace`` seconds the watchdog
reports the breach itself through ``on_stuck``, and the worker process is ended (by Ray Tune, when
workers are not reused, else by the caller), which frees the trial's slot.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from orchestrator.errors import TrialLimitExceeded

if TYPE_CHECKING:
    from orchestrator.spec.model import Limits

SAMPLE_INTERVAL_S = 0.5
GRACE_S = 2.0


@dataclass(frozen=True)
class TrialLimits:
    """What a worker enforces; built from the spec's :class:`~orchestrator.spec.model.Limits`.
    ``exit_when_stuck``: the worker process is reused across trials, so a trial stuck in C ends
    its process itself after reporting."""

    time_s: float | None = None
    memory_bytes: int | None = None
    memory_fraction: float | None = None
    exit_when_stuck: bool = False

    @classmethod
    def from_spec(cls, limits: "Limits") -> "TrialLimits":
        return cls(limits.trial_time_s, limits.trial_memory_bytes, limits.trial_memory_fraction,
                   exit_when_stuck=limits.reuse_workers)

    @property
    def any(self) -> bool:
        return self.time_s is not None or self.memory_bytes is not None or self.memory_fraction is not None

    def memory_limit(self) -> int | None:
        """Bytes: the given size, or the share of this node's RAM."""
        if self.memory_bytes is not None:
            return self.memory_bytes
        if self.memory_fraction is None:
            return None
        import psutil

        return int(psutil.virtual_memory().total * self.memory_fraction)


@dataclass(frozen=True)
class Breach:
    """A limit a trial broke: which, why (the sentence the user sees), and the readings then."""

    kind: str  # "time" or "memory"
    reason: str
    elapsed_s: float
    memory_bytes: int
    detected_at: float  # time.monotonic()


def format_bytes(size: float) -> str:
    """``1.3 GiB``, ``600 MiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 and not float(value).is_integer() else f"{value:.0f} {unit}"
    return f"{size:.0f} B"


def format_seconds(seconds: float) -> str:
    """``30 s``, ``1.5 s``, ``30 min``, ``2 h``."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def process_memory(pid: int | None = None) -> int:
    """Resident bytes of process ``pid`` (default this one) and all its children."""
    import psutil

    try:
        process = psutil.Process(pid or os.getpid())
        total = process.memory_info().rss
        children = process.children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def device_memory() -> int:
    """Bytes torch holds on this process's current CUDA device (0 without CUDA in use)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.memory_reserved())
    except Exception:  # a broken driver must not break the watchdog
        return 0
    return 0


class Watchdog:
    """Watches one trial running in ``target`` (default: the thread that builds the watchdog).

    Use :meth:`start`, then :meth:`finish` when the trial's code is done (after it, nothing is
    raised in ``target`` any more). :meth:`claim` says whether the caller is the first to report
    the breach (the trial's thread and the watchdog's ``on_stuck`` may both try).
    """

    def __init__(self, number: int, limits: TrialLimits, on_stuck: Callable[[Breach], None] | None = None,
                 target: threading.Thread | None = None, interval: float = SAMPLE_INTERVAL_S, grace: float = GRACE_S):
        self.number = number
        self.limits = limits
        self.breach: Breach | None = None
        self.peak_memory = 0
        self._memory_limit = limits.memory_limit()
        self._on_stuck = on_stuck
        self._target = target or threading.current_thread()
        self._interval, self._grace = interval, grace
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._claimed = False
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"stepsize-watchdog-{number}", daemon=True)

    def start(self) -> "Watchdog":
        self._started_at = time.monotonic()
        if self.limits.any:
            self._thread.start()
        return self

    def finish(self) -> None:
        """The trial's code is done: stop watching, and cancel an exception not yet raised."""
        with self._lock:
            if self._done.is_set():
                return
            self._done.set()
            if self.breach is not None and self._target.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target.ident), None)

    def claim(self) -> bool:
        """True once: for whoever reports the breach first."""
        with self._lock:
            first, self._claimed = not self._claimed, True
            return first

    def check(self) -> Breach | None:
        """One reading; the breach it finds, if any (not acted on)."""
        elapsed = time.monotonic() - self._started_at
        memory = process_memory()
        self.peak_memory = max(self.peak_memory, memory)
        limit_t, limit_m = self.limits.time_s, self._memory_limit
        if limit_t is not None and elapsed > limit_t:
            reason = f"trial {self.number} exceeded its time limit of {format_seconds(limit_t)}"
            return Breach("time", reason, elapsed, memory, time.monotonic())
        if limit_m is not None and memory > limit_m:
            reason = f"trial {self.number} used {format_bytes(memory)}, above its limit of {format_bytes(limit_m)}"
            return Breach("memory", reason, elapsed, memory, time.monotonic())
        device = device_memory()
        if limit_m is not None and device > limit_m:
            reason = (f"trial {self.number} used {format_bytes(device)} of GPU memory, above its limit of "
                      f"{format_bytes(limit_m)}")
            return Breach("memory", reason, elapsed, device, time.monotonic())
        return None

    def _run(self) -> None:
        while not self._done.wait(self._next_wait()):
            breach = self.check()
            if breach is not None:
                self._stop(breach)
                return

    def _next_wait(self) -> float:
        if self.limits.time_s is None:
            return self._interval
        left = self.limits.time_s - (time.monotonic() - self._started_at)
        return max(0.01, min(self._interval, left + 0.01))

    def _stop(self, breach: Breach) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self.breach = breach
            if self._target.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target.ident),
                                                           ctypes.py_object(TrialLimitExceeded))
        if self._done.wait(self._grace) or self._on_stuck is None or not self.claim():
            return
        self._on_stuck(breach)
