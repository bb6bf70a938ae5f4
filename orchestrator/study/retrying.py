"""A patient Optuna storage for the driver's long-running study: every call through Optuna's public
:class:`optuna.storages.BaseStorage` interface is delegated, and one that fails because the database
cannot be reached (a server down or restarting, a full disk, a locked or unopenable SQLite file) is
tried again with backoff for up to ``patience_s`` seconds.

One warning line names the storage (password shown as ``***``) and the cause when it starts
waiting, one says when it is back and after how long. When the patience runs out it raises
:class:`~orchestrator.errors.StorageGaveUp`; from then on every call fails at once, so the driver
ends quickly and leaves the study as it was (its running trials stay RUNNING for ``stepsize
resume``). Quick commands (``stepsize status``) use the plain storage and fail fast.
"""

from __future__ import annotations

import abc
import threading
import time
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from orchestrator.credentials import protected_logger, redact, redact_text
from orchestrator.errors import StorageGaveUp

logger = protected_logger("orchestrator.study")
if logger.level == 0:
    logger.setLevel(30)  # WARNING: its lines reach stderr whatever a library does to the root logger

#: SQLite errors that pass: a lock held too long, a full disk, a file that cannot be opened now.
_SQLITE_TRANSIENT = ("database is locked", "disk is full", "unable to open", "disk i/o error")
_FIRST_PAUSE_S = 0.5
_LONGEST_PAUSE_S = 2.0


def connection_cause(exc: BaseException) -> str | None:
    """The one-line reason when ``exc`` (or what caused it) means the database could not be
    reached, else None (a bug or a refused write: not retried)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        text = str(getattr(seen, "orig", None) or seen).strip()
        first = (text.splitlines() or [type(seen).__name__])[0]
        lowered = text.lower()
        if any(pattern in lowered for pattern in _SQLITE_TRANSIENT):
            return redact_text(first)
        if isinstance(seen, (OperationalError, InterfaceError)) and "sqlite" not in type(
                getattr(seen, "orig", None)).__module__:
            return redact_text(first.rsplit(" failed: ", 1)[-1])
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return redact_text(first)
        seen = seen.__cause__ or seen.__context__
    return None


class RetryingStorage(optuna.storages.BaseStorage):
    """``inner`` with every call retried while the database cannot be reached (see the module
    docstring). ``url`` is shown (password masked) in the warnings and the error."""

    def __init__(self, inner: optuna.storages.BaseStorage, url: str, patience_s: float,
                 plain: Any = None, sleep: Callable[[float], None] = time.sleep):
        self.inner = inner
        self.plain = plain if plain is not None else inner  # attributes such as ``engine`` come from it
        self.url = redact(url) or url
        self.patience_s = patience_s
        self.gave_up: StorageGaveUp | None = None
        self.outages = 0  # how many outages it rode out
        self._sleep = sleep
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._cause: str | None = None

    def __getattr__(self, name: str) -> Any:  # anything else (engine, url...) from the RDB storage
        if name in ("inner", "plain"):
            raise AttributeError(name)
        return getattr(self.plain, name)

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "url": self.url, "patience_s": self.patience_s, "plain": self.plain}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["inner"], state["url"], state["patience_s"], state["plain"])  # type: ignore[misc]

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``inner.<name>(*args, **kwargs)``, retried while the database cannot be reached."""
        method = getattr(self.inner, name)
        pause = _FIRST_PAUSE_S
        retried = False
        while True:
            try:
                result = method(*args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if retried and name == "set_trial_state_values" and self._already_told(*args, **kwargs):
                    return True  # the first try's commit went through before the connection broke
                raise
            except Exception as exc:
                cause = connection_cause(exc)
                if cause is None:
                    raise
                left = self._down(cause, exc)
                self._sleep(min(pause, left))
                pause = min(pause * 2, _LONGEST_PAUSE_S)
                retried = True
                continue
            self._up()
            return result

    def _already_told(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        return self.inner.get_trial(trial_id).state == state

    def _down(self, cause: str, exc: Exception) -> float:
        """Note a failed call; the seconds left to wait, or raise :class:`StorageGaveUp`."""
        with self._lock:
            if self.gave_up is not None:
                raise self.gave_up from exc
            now = time.monotonic()
            if self._down_since is None:
                self._down_since, self._cause = now, cause
                logger.warning("the Optuna storage at %s does not answer (%s); the study waits for it, retrying for "
                               "up to %s (storage_patience); trials already running go on.", self.url, cause,
                               _duration(self.patience_s))
            waited = now - self._down_since
            if waited < self.patience_s:
                return self.patience_s - waited
            self.gave_up = StorageGaveUp(self.url, cause, waited)
            raise self.gave_up from exc

    def _up(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            waited = time.monotonic() - self._down_since
            self._down_since, self._cause = None, None
            self.outages += 1
        logger.warning("the Optuna storage at %s is back after %.1f s; the study goes on.", self.url, waited)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``{name}`` of the wrapped storage, retried while the database cannot be reached."
    return method


for _name in [n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")]:
    if callable(getattr(optuna.storages.BaseStorage, _name)):
        setattr(RetryingStorage, _name, _delegate(_name))
abc.update_abstractmethods(RetryingStorage)
