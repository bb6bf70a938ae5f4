"""The one-driver rule: a study is driven by one process at a time. The driver records itself
(host and pid) in the study's attributes; another process on the same host is refused while that
one lives."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import optuna

from orchestrator.errors import StudyBusyError
from orchestrator.keys import StudyAttr


def claim_driver(study: optuna.Study) -> None:
    """Record this process as the study's driver; :class:`StudyBusyError` when a live process
    on this machine already is."""
    holder = study.user_attrs.get(StudyAttr.DRIVER) or {}
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        raise StudyBusyError(study.study_name, pid)
    study.set_user_attr(StudyAttr.DRIVER, {"host": socket.gethostname(), "pid": os.getpid()})


def release_driver(study: optuna.Study) -> None:
    """Let another process drive the study (this run of it has ended)."""
    holder = study.user_attrs.get(StudyAttr.DRIVER) or {}
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        study.set_user_attr(StudyAttr.DRIVER, {})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")
    if status.is_file() and "\nState:\tZ" in status.read_text():
        return False  # a zombie: dead, not yet reaped
    return True


def active_driver(study: optuna.Study) -> dict | None:
    """The study's driver as recorded (``{"host", "pid"}``) while it may be running: a live
    process on this machine other than this one, or any process on another machine (whose
    liveness cannot be read from here). None when no other process drives it."""
    holder = study.user_attrs.get(StudyAttr.DRIVER) or {}
    pid = holder.get("pid")
    if not holder or not isinstance(pid, int):
        return None
    if holder.get("host") != socket.gethostname():
        return holder
    return holder if pid != os.getpid() and _alive(pid) else None
