"""The in-memory buffer between Tune's callback (driver thread) and the writer (flush thread)."""

from __future__ import annotations

import threading

from orchestrator.tracking.records import Record


class RecordBuffer:
    """Records in arrival order; ``add`` is cheap (a lock and an append), ``drain`` takes them all.

    ``results_since_drain`` counts per-epoch metric records since the last drain, so the flusher
    can write early when many have piled up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._results = 0

    def add(self, *records: Record) -> int:
        """Append records; returns the number of metric records waiting."""
        with self._lock:
            self._records.extend(records)
            self._results += sum(1 for r in records if r["op"] == "metrics")
            return self._results

    def drain(self) -> list[Record]:
        with self._lock:
            records, self._records, self._results = self._records, [], 0
            return records

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def results_since_drain(self) -> int:
        with self._lock:
            return self._results
