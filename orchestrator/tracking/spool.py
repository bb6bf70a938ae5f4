"""The spool: records that could not be written while the tracking store was unreachable, kept on
disk as JSON lines until it is back.

The first line is a header naming the study and its MLflow home, so a spool left behind (the
driver ended during an outage) can be sent later by :func:`orchestrator.tracking.replay_spools`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from orchestrator.tracking.records import Record

SPOOL_GLOB = "mlflow-spool-*.jsonl"


def spool_file(folder: str | os.PathLike[str], study_key: str) -> Path:
    return Path(folder) / f"mlflow-spool-{study_key[:12]}.jsonl"


class Spool:
    """An append-only JSONL file of records, cleared once they are all written."""

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any]):
        self.path = Path(path)
        self.header = dict(header)

    def __len__(self) -> int:
        if not self.path.is_file():
            return 0
        with self.path.open("rb") as handle:
            return max(0, sum(1 for _ in handle) - 1)

    def append(self, records: Iterable[Record]) -> int:
        records = list(records)
        if not records:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a", encoding="utf-8") as handle:
            if fresh:
                handle.write(json.dumps({"header": self.header}) + "\n")
            for record in records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return len(records)

    def load(self) -> list[Record]:
        """The spooled records, oldest first (a torn last line, from a crash mid-write, is skipped)."""
        if not self.path.is_file():
            return []
        records: list[Record] = []
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "header" not in item:
                    records.append(item)
        return records

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def read_header(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        with Path(path).open(encoding="utf-8") as handle:
            first = json.loads(handle.readline() or "{}")
    except (OSError, json.JSONDecodeError):
        return None
    return first.get("header")
