"""The flusher: a driver thread that moves records from the record log into MLflow, so Tune's
event loop never waits on the tracking store.

It flushes every ``interval_s`` seconds, as soon as ``batch_results`` per-epoch records are
waiting, and once more when stopped (a trial's end goes with the next flush, not in one of its
own). While the store is unreachable
the records stay in the log on disk and the next flush tries again; the warning is given once per
outage, not per record.
"""

from __future__ import annotations

import threading

from orchestrator.credentials import protected_logger, redact
from orchestrator.errors import TrackingUnavailable
from orchestrator.tracking.record_log import Batch, RecordLog
from orchestrator.tracking.writer import MlflowWriter

logger = protected_logger("orchestrator.tracking")

DEFAULT_INTERVAL_S = 5.0
DEFAULT_BATCH_RESULTS = 200


class Flusher:
    """Writes ``log``'s records with ``writer`` from a thread of its own (see the module docstring)."""

    def __init__(
        self,
        log: RecordLog,
        writer: MlflowWriter,
        interval_s: float = DEFAULT_INTERVAL_S,
        batch_results: int = DEFAULT_BATCH_RESULTS,
    ):
        self.log = log
        self.writer = writer
        self.interval_s = interval_s
        self.batch_results = batch_results
        self.outage: str | None = None  # why the store is unreachable, while it is
        self.flushes = 0
        self._lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- thread ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="stepsize-mlflow", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 120.0) -> None:
        """Stop the thread after its current flush (the caller flushes what is left)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("MLflow writer still busy after %.0f s; leaving it", timeout_s)
            self._thread = None

    def added(self, waiting_results: int) -> None:
        """Called after records were buffered: wake the thread when enough results wait."""
        if waiting_results >= self.batch_results:
            self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.flush()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    # -- one flush -------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Write what waits (older segments first); True when nothing is left over."""
        with self._lock:
            if self.log.backlog() and not self.writer.reachable():
                batch = self.log.take(read_backlog=False)
                self._down(batch, "its /health does not answer")
                return False
            batch = self.log.take()
            if not batch.records:
                self.log.written(batch)
                return True
            self.flushes += 1
            try:
                self.writer.apply(batch.records)
            except TrackingUnavailable as exc:
                self._down(batch, str(exc))
                return False
            except Exception as exc:  # noqa: BLE001 - a bug here must not lose records or stop the study
                if self.outage is None:  # the traceback once per outage, as the warning
                    logger.error("MLflow writer failed; records kept in %s", self.log.path.parent, exc_info=True)
                self._down(batch, f"{type(exc).__name__}: {exc}")
                return False
            self.log.written(batch)
            self._up(len(batch.records))
            return True

    def _down(self, batch: Batch, reason: str) -> None:
        self.log.kept(batch)
        if self.outage is None:
            self.outage = reason
            logger.warning(
                "MLflow tracking at %s is unreachable (%s); the study goes on and its records wait in %s "
                "until it is back.", redact(self.writer.tracking_uri), reason, self.log.path.parent,
            )

    def _up(self, sent: int) -> None:
        if self.outage is not None:
            self.outage = None
            logger.warning("MLflow tracking at %s is reachable again; %d records kept meanwhile were written.",
                           redact(self.writer.tracking_uri), sent)
