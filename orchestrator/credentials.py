"""URLs that may carry credentials: the storage URL and the tracking URI.

A password may reach stepsize three ways, and only the connection ever sees it:

- ``${NAME}`` in a URL (``postgresql+psycopg://tuner:${PGPASSWORD}@db/optuna``) is kept as written
  wherever stepsize stores the URL and is replaced from the environment only when it connects
  (:func:`expand`); a name that is not set is refused before anything starts.
- A password written into the URL (``user:secret@host``) is used for this process's connections
  only: everything stepsize stores holds the URL without it (:func:`for_storing`:
  ``user@host``, which PostgreSQL's own ``~/.pgpass`` / ``PGPASSWORD`` and MLflow's
  ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` then complete), and everything it
  prints shows ``user:***@host`` (:func:`redact`; :func:`redact_text` for any text, and
  :func:`protected_logger` for stepsize's loggers).
- Credentials the libraries read themselves (``~/.pgpass``, ``PGPASSWORD``, MLflow's variables)
  never pass through stepsize at all.
"""

from __future__ import annotations

import logging
import os
import re

from orchestrator.errors import SpecError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
HIDDEN = "***"


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``(scheme + "://", userinfo, host and the rest)`` of a URL with a user part, else None."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return None
    userinfo, _, hostport = authority.rpartition("@")
    return scheme + sep, userinfo, hostport + slash + path


def has_password(url: str | None) -> bool:
    """Whether ``url`` carries a password written out (not a ``${NAME}`` reference)."""
    parts = _userinfo(url) if isinstance(url, str) else None
    if parts is None or ":" not in parts[1]:
        return False
    password = parts[1].split(":", 1)[1]
    return bool(password) and not _VARIABLE.fullmatch(password)


def redact(url: str | None) -> str | None:
    """``url`` as stepsize prints it: a written-out password shown as ``***``."""
    if not has_password(url):
        return url
    prefix, userinfo, rest = _userinfo(url)  # type: ignore[misc, arg-type]
    return f"{prefix}{userinfo.split(':', 1)[0]}:{HIDDEN}@{rest}"


def for_storing(url: str | None) -> str | None:
    """``url`` as stepsize stores it: without a written-out password (``user@host``); a
    ``${NAME}`` reference stays."""
    if not has_password(url):
        return url
    prefix, userinfo, rest = _userinfo(url)  # type: ignore[misc, arg-type]
    return f"{prefix}{userinfo.split(':', 1)[0]}@{rest}"


def variables(url: str | None) -> list[str]:
    """The environment variables ``url`` refers to as ``${NAME}``."""
    return _VARIABLE.findall(url) if isinstance(url, str) else []


def check_variables(url: str | None, field: str) -> None:
    """Refuse a URL that refers to an environment variable that is not set."""
    missing = [name for name in variables(url) if name not in os.environ]
    if missing:
        raise SpecError(field, url, f"a URL whose ${{...}} references are set in the environment ({', '.join(missing)} "
                        "is not)", f"Export {missing[0]} before the command, or write the URL without it.")


def expand(url: str) -> str:
    """``url`` with every ``${NAME}`` replaced from the environment (a name that is not set stays)."""
    return _VARIABLE.sub(lambda match: os.environ.get(match.group(1), match.group(0)), url)


def connectable(url: str, field: str) -> str:
    """``url`` as a connection uses it: every ``${NAME}`` filled in from the environment;
    :class:`~orchestrator.errors.SpecError` naming ``field`` when a name is not set."""
    check_variables(url, field)
    return expand(url)


def without_userinfo(url: str) -> str:
    """``url`` without its user part (``https://host/...``), for a link or an unauthenticated check."""
    prefix_userinfo_rest = _userinfo(url)
    if prefix_userinfo_rest is None:
        return url
    prefix, _, rest = prefix_userinfo_rest
    return prefix + rest


# scheme://user:password@host..., the password running to the authority's last "@"
_IN_TEXT = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):([^\s/]+)@(?=[^\s/@]*(?:[/\s'\"]|$))")


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with every written-out password of a URL in it
    shown as ``***``."""
    return _IN_TEXT.sub(lambda m: m.group(0) if _VARIABLE.fullmatch(m.group(2)) else f"{m.group(1)}:{HIDDEN}@", text)


class RedactingFilter(logging.Filter):
    """Shows every written-out password of a URL in a log record (message and traceback) as ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def protected_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with a :class:`RedactingFilter` (every stepsize logger has one)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
