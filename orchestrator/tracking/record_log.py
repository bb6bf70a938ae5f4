"""The record log: every record the driver means to write to MLflow, kept on disk until MLflow has
it. One mechanism does two jobs: a write-ahead journal (a killed driver loses nothing it reported)
and the spool of an outage (records wait while the tracking store is unreachable).

Records are appended, as they arrive, to the open segment ``<stem>.jsonl`` (a write to the OS's
page cache, no fsync: it survives the driver being killed, not a power loss). :meth:`RecordLog.take`
seals the open segment (renames it ``<stem>.<time>.<pid>.sealed.jsonl``) and hands out its records
after those of older sealed segments still on disk: the ones a flush could not write, or a killed
driver left behind. :meth:`RecordLog.written` deletes the segments once MLflow has their records;
:meth:`RecordLog.kept` fsyncs them when it could not be reached, so they wait through an outage and
are written by the next flush, by ``stepsize resume`` or by ``stepsize ui``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator.tracking.records import Record

OPEN_SUFFIX = ".jsonl"
SEALED_SUFFIX = ".sealed.jsonl"


def log_path(folder: str | os.PathLike[str], study_key: str) -> Path:
    """The open segment of a study's record log in ``folder``."""
    return Path(folder) / f"mlflow-log-{study_key[:12]}{OPEN_SUFFIX}"


@dataclass
class Batch:
    """Records taken from the log, oldest first, and the segment files that hold them."""

    records: list[Record] = field(default_factory=list)
    segments: list[Path] = field(default_factory=list)
    backlog: bool = False  # some came from segments an earlier flush or driver left


class RecordLog:
    """A study's record log (see the module docstring). ``add`` is cheap: a lock, an append to a
    list and a line written.

    Args:
        path: the open segment (:func:`log_path`).
        adopt_open: take over an open segment already there (left by a driver that was killed;
            only the study's one driver may do this).
    """

    def __init__(self, path: str | os.PathLike[str], adopt_open: bool = True):
        self.path = Path(path)
        self._stem = self.path.name[: -len(OPEN_SUFFIX)]
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._results = 0
        self._handle: IO[str] | None = None
        self._sealed = 0
        self._synced: set[Path] = set()  # sealed segments already fsynced
        if adopt_open and self.path.is_file():
            self._seal()

    def add(self, *records: Record) -> int:
        """Append records; returns the number of per-epoch metric records waiting."""
        with self._lock:
            if not records:
                return self._results
            self._records.extend(records)
            self._results += sum(1 for r in records if r["op"] == "metrics")
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
            self._handle.flush()
            return self._results

    @property
    def results_waiting(self) -> int:
        """Per-epoch metric records added since the last :meth:`take`."""
        with self._lock:
            return self._results

    def backlog(self) -> list[Path]:
        """Sealed segments on disk, oldest first."""
        return sorted(self.path.parent.glob(f"{self._stem}.*{SEALED_SUFFIX}"))

    def take(self, read_backlog: bool = True) -> Batch:
        """Seal what was added and take it, after the backlog's records (read from disk unless
        ``read_backlog`` is False: then only the new records are taken)."""
        with self._lock:
            new, self._records, self._results = self._records, [], 0
            fresh = self._seal()
        backlog = [p for p in self.backlog() if p != fresh]
        batch = Batch(backlog=bool(backlog))
        if read_backlog:
            for segment in backlog:
                batch.records.extend(read_segment(segment))
            batch.segments.extend(backlog)
        batch.records.extend(new)
        if fresh is not None:
            batch.segments.append(fresh)
        return batch

    def written(self, batch: Batch) -> None:
        """MLflow has the batch's records: delete its segments."""
        for segment in batch.segments:
            segment.unlink(missing_ok=True)
            self._synced.discard(segment)

    def kept(self, batch: Batch) -> None:
        """MLflow could not be reached: keep the batch's segments, synced to disk (each once)."""
        for segment in batch.segments:
            if segment in self._synced:
                continue
            try:
                with segment.open("rb") as handle:
                    os.fsync(handle.fileno())
                self._synced.add(segment)
            except OSError:
                pass

    def waiting(self) -> int:
        """Records on disk that MLflow does not have yet (the open segment and the backlog)."""
        count = 0
        for segment in [*self.backlog(), self.path]:
            if segment.is_file():
                with segment.open("rb") as handle:
                    count += sum(1 for _ in handle)
        return count

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _seal(self) -> Path | None:
        """Rename the open segment to a sealed one (called with the lock held, or in __init__)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.path.is_file():
            return None
        self._sealed += 1
        sealed = self.path.with_name(f"{self._stem}.{time.time_ns():020d}-{self._sealed:06d}.{os.getpid()}{SEALED_SUFFIX}")
        os.replace(self.path, sealed)
        return sealed


def read_segment(path: str | os.PathLike[str]) -> list[Record]:
    """A segment's records (a torn last line, from a kill mid-write, is skipped)."""
    records: list[Record] = []
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return records
