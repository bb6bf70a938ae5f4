"""The one-driver rule: a study is driven by one process at a time, wherever that process runs.

The claim is a row of stepsize's own table ``stepsize_driver`` in the study's storage database,
keyed by the study's name. A claimant inserts the row; the database's uniqueness lets exactly one
of two simultaneous claimants win, on SQLite and PostgreSQL alike. The row names the driver's host
and pid and holds a heartbeat the driver refreshes every :data:`HEARTBEAT_S` seconds from a daemon
thread. A holder is stale, and may be taken over, when it is on this host and its process is gone,
or when its heartbeat is older than :data:`STALE_AFTER_S` seconds (so the hosts' clocks must agree
to well within that, as NTP keeps them). A takeover is an UPDATE conditional on the old holder's
token (compare-and-swap): of two takers only one wins. A study in an in-memory storage (tests) can
only be driven by its own process and keeps its holder in a study attribute instead.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from orchestrator.errors import StudyBusyError
from orchestrator.keys import StudyAttr

#: Seconds between a driver's heartbeats.
HEARTBEAT_S = 10.0
#: A holder whose last heartbeat is older than this many seconds may be taken over.
STALE_AFTER_S = 60.0
#: stepsize's own table in the storage database.
TABLE = "stepsize_driver"

_log = logging.getLogger(__name__)
_READY: set[str] = set()  # storage URLs whose table exists
_CLAIMS: dict[tuple[str, str], "_Claim"] = {}  # (storage URL, study name) -> this process's claim


@dataclass(frozen=True)
class Holder:
    """A study's driver as its row records it (``heartbeat`` and ``claimed_at``: Unix times)."""

    host: str
    pid: int
    token: str
    claimed_at: float
    heartbeat: float

    def age(self, now: float | None = None) -> float:
        """Seconds since the holder's last heartbeat."""
        return max(0.0, (time.time() if now is None else now) - self.heartbeat)

    def stale(self, now: float | None = None) -> bool:
        """Whether the holder may be taken over: a dead process on this host, or a heartbeat
        older than :data:`STALE_AFTER_S`."""
        return (self.host == socket.gethostname() and not _alive(self.pid)) or self.age(now) > STALE_AFTER_S

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "heartbeat": self.heartbeat}


@dataclass
class _Claim:
    holder: Holder
    stop: threading.Event
    thread: threading.Thread | None


@functools.cache
def _table() -> Any:
    from sqlalchemy import Column, Float, Integer, MetaData, String, Table

    return Table(
        TABLE, MetaData(),
        Column("study_name", String(512), primary_key=True),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("token", String(32), nullable=False),
        Column("claimed_at", Float, nullable=False),
        Column("heartbeat", Float, nullable=False),
    )


def _engine(url: str, create: bool = True) -> Any:
    """The storage's SQLAlchemy engine, with stepsize's table created if missing (with
    ``create``; else None when the table is missing: nothing ever claimed a study there)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    from orchestrator.study.storage import rdb_storage

    engine = rdb_storage(url).engine
    if url not in _READY:
        if not create:
            if not inspect(engine).has_table(TABLE):
                return None
            _READY.add(url)
            return engine
        try:
            _table().create(engine, checkfirst=True)
        except DBAPIError:  # another process created it between the check and the CREATE
            if not inspect(engine).has_table(TABLE):
                raise
        _READY.add(url)
    return engine


def read_holder(url: str, name: str) -> Holder | None:
    """Study ``name``'s driver as recorded in the storage at ``url`` (None when unclaimed)."""
    table, engine = _table(), _engine(url, create=False)  # a status read creates nothing
    if engine is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(table.select().where(table.c.study_name == name)).mappings().first()
    return None if row is None else Holder(row["host"], row["pid"], row["token"], row["claimed_at"], row["heartbeat"])


def claim(url: str, name: str, *, host: str | None = None, pid: int | None = None,
          heartbeat: bool = True) -> Holder:
    """Claim study ``name`` in the storage at ``url`` for this process (``host`` and ``pid`` are
    this machine's and process's unless given, for tests); return the claim. With ``heartbeat``,
    a daemon thread refreshes it until :func:`release`. :class:`StudyBusyError` when a holder
    that is not stale has it."""
    from sqlalchemy.exc import IntegrityError

    engine, table = _engine(url), _table()
    now = time.time()
    me = Holder(host or socket.gethostname(), os.getpid() if pid is None else pid, uuid.uuid4().hex, now, now)
    values = {"host": me.host, "pid": me.pid, "token": me.token, "claimed_at": now, "heartbeat": now}
    current = None
    for _ in range(5):
        try:
            with engine.begin() as conn:
                conn.execute(table.insert().values(study_name=name, **values))
            break
        except IntegrityError:
            pass  # someone holds it: taken over below when stale
        current = read_holder(url, name)
        if current is None:
            continue  # released in between: insert again
        if not (current.host == me.host and current.pid == me.pid) and not current.stale():
            raise busy(name, current)
        with engine.begin() as conn:
            swapped = conn.execute(table.update().where(table.c.study_name == name, table.c.token == current.token)
                                   .values(**values)).rowcount == 1
        if swapped:
            if current.pid != me.pid or current.host != me.host:
                _log.warning("study %r: took over from stale driver %s on %s (last heartbeat %.0f s ago)",
                             name, current.pid, current.host, current.age())
            break
    else:
        raise busy(name, read_holder(url, name) or current or me)
    stop = threading.Event()
    thread = None
    if heartbeat:
        thread = threading.Thread(target=_beat, args=(url, name, me.token, stop), daemon=True,
                                  name=f"stepsize-driver-heartbeat-{name}")
        thread.start()
    previous = _CLAIMS.pop((url, name), None)
    if previous is not None:
        previous.stop.set()
    _CLAIMS[(url, name)] = _Claim(me, stop, thread)
    return me


def release(url: str, name: str) -> None:
    """Give up this process's claim on study ``name`` (nothing when it holds none)."""
    held = _CLAIMS.pop((url, name), None)
    if held is None:
        return
    held.stop.set()
    table = _table()
    with _engine(url).begin() as conn:
        conn.execute(table.delete().where(table.c.study_name == name, table.c.token == held.holder.token))


def busy(name: str, holder: Holder) -> StudyBusyError:
    """The error for a claimant that lost to ``holder``."""
    here = holder.host == socket.gethostname()
    return StudyBusyError(name, holder.pid, None if here else holder.host, holder.age(), STALE_AFTER_S)


def _beat(url: str, name: str, token: str, stop: threading.Event) -> None:
    table = _table()
    while not stop.wait(HEARTBEAT_S):
        try:
            with _engine(url).begin() as conn:
                kept = conn.execute(table.update().where(table.c.study_name == name, table.c.token == token)
                                    .values(heartbeat=time.time())).rowcount == 1
        except Exception as exc:  # the storage is briefly unreachable: try again at the next beat
            _log.warning("study %r: the driver's heartbeat could not be written: %s", name, exc)
            continue
        if not kept:
            _log.warning("study %r: another driver took the study over; this one no longer holds it", name)
            return


def _url(study: optuna.Study, storage: str | None) -> str | None:
    from orchestrator.study.storage import storage_url

    return storage or storage_url(study)


def claim_driver(study: optuna.Study, storage: str | None = None, *, host: str | None = None) -> None:
    """Record this process as the study's driver; :class:`StudyBusyError` when a live driver
    (here or on another host) already is. ``storage`` is the study's storage URL, found from the
    study when it was created or loaded through :mod:`orchestrator.study.storage`."""
    url = _url(study, storage)
    if url is not None:
        claim(url, study.study_name, host=host)
        return
    holder = study.user_attrs.get(StudyAttr.DRIVER) or {}
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        raise StudyBusyError(study.study_name, pid)
    study.set_user_attr(StudyAttr.DRIVER, {"host": socket.gethostname(), "pid": os.getpid()})


def release_driver(study: optuna.Study, storage: str | None = None) -> None:
    """Let another process drive the study (this run of it has ended)."""
    url = _url(study, storage)
    if url is not None:
        release(url, study.study_name)
        return
    holder = study.user_attrs.get(StudyAttr.DRIVER) or {}
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        study.set_user_attr(StudyAttr.DRIVER, {})


def active_driver(study: optuna.Study, storage: str | None = None) -> dict | None:
    """The study's driver (``{"host", "pid", "heartbeat"}``) while it may be running: a holder
    other than this process that is not stale. None when no other process drives it."""
    url = _url(study, storage)
    if url is not None:
        holder = read_holder(url, study.study_name)
        if holder is None or holder.stale() or (holder.host == socket.gethostname() and holder.pid == os.getpid()):
            return None
        return holder.as_dict()
    recorded = study.user_attrs.get(StudyAttr.DRIVER) or {}
    pid = recorded.get("pid")
    if not recorded or not isinstance(pid, int):
        return None
    if recorded.get("host") != socket.gethostname():
        return recorded
    return recorded if pid != os.getpid() and _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")
    try:
        if "\nState:\tZ" in status.read_text():
            return False  # a zombie: dead, not yet reaped
    except OSError:
        pass
    return True
