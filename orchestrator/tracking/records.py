"""Records: what the driver wants written to MLflow, as plain JSON-able dicts.

Each names its run by reference (``parent`` or ``trial:N``), not by run id, so a record made while
the tracking server is down can wait on disk and still land in the right run later. Every record
is idempotent when applied again: ``open`` finds the run before creating it, params are re-logged
with the same value, tags overwrite, metrics are sent once per (run, key, step), ``close`` and
``artifact`` overwrite.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

Record = dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def open_run(ref: str, name: str, tags: Mapping[str, str], start_ms: int | None = None) -> Record:
    return {"op": "open", "run": ref, "name": name, "tags": dict(tags), "ts": start_ms or now_ms()}


def params(ref: str, values: Mapping[str, str]) -> Record:
    return {"op": "params", "run": ref, "params": dict(values)}


def tags(ref: str, values: Mapping[str, str]) -> Record:
    return {"op": "tags", "run": ref, "tags": {k: str(v) for k, v in values.items()}}


def metrics(ref: str, step: int, values: Mapping[str, float], ts: int | None = None) -> Record:
    return {"op": "metrics", "run": ref, "step": int(step), "ts": ts or now_ms(), "values": dict(values)}


def close(ref: str, status: str, end_ms: int | None = None) -> Record:
    return {"op": "close", "run": ref, "status": status, "ts": end_ms or now_ms()}


def artifact(ref: str, path: str, artifact_path: str | None = None) -> Record:
    """A local file to upload; it must still exist when the record is applied."""
    return {"op": "artifact", "run": ref, "path": str(path), "dir": artifact_path}


def metric_points(record: Record) -> int:
    return len(record.get("values", ())) if record.get("op") == "metrics" else 0
