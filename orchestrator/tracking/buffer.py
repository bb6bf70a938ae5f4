"""The buffer between Tune's callback (driver thread) and the writer (flush thread), with an
optional write-ahead journal on disk.

With a journal, every record is also appended to a JSON-lines file as it arrives (a write to the
OS's page cache, no fsync: it survives the driver being killed, not a power loss). ``drain`` hands
the records out with the journal file that holds them; the flusher deletes that file once they
are in MLflow (or in the spool). A driver killed before a flush leaves the file behind, and the
next run of the study (``stepsize resume``) writes its records first: nothing reported is lost.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path
from typing import IO

from orchestrator.tracking.records import Record


class RecordBuffer:
    """Records in arrival order; ``add`` is cheap (a lock, an append and a line written),
    ``drain`` takes them all.

    ``results_since_drain`` counts per-epoch metric records since the last drain, so the flusher
    can write early when many have piled up.
    """

    def __init__(self, journal: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._results = 0
        self._journal = Path(journal) if journal is not None else None
        self._handle: IO[str] | None = None
        self._sealed = itertools.count()

    def add(self, *records: Record) -> int:
        """Append records; returns the number of metric records waiting."""
        with self._lock:
            self._records.extend(records)
            self._results += sum(1 for r in records if r["op"] == "metrics")
            if self._journal is not None and records:
                if self._handle is None:
                    self._journal.parent.mkdir(parents=True, exist_ok=True)
                    self._handle = self._journal.open("a", encoding="utf-8")
                self._handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
                self._handle.flush()
            return self._results

    def drain(self) -> list[Record]:
        """Take every waiting record (see :meth:`drain_sealed` for the journal file too)."""
        return self.drain_sealed()[0]

    def drain_sealed(self) -> tuple[list[Record], Path | None]:
        """Take every waiting record and the journal file that holds them (renamed, so new
        records start a new file); delete it once the records are safe elsewhere."""
        with self._lock:
            records, self._records, self._results = self._records, [], 0
            sealed = None
            if self._handle is not None:
                self._handle.close()
                self._handle = None
                sealed = self._journal.with_name(f"{self._journal.name}.{os.getpid()}-{next(self._sealed)}")
                os.replace(self._journal, sealed)
            return records, sealed

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def results_since_drain(self) -> int:
        with self._lock:
            return self._results


def journal_leftovers(journal: str | os.PathLike[str]) -> list[Path]:
    """Journal files an earlier driver of the study left behind, oldest first."""
    path = Path(journal)
    found = [p for p in path.parent.glob(path.name + "*") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def read_journal(path: str | os.PathLike[str]) -> list[Record]:
    """A journal file's records (a torn last line, from a kill mid-write, is skipped)."""
    records: list[Record] = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
