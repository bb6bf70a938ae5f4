"""The machinery behind the study file's error messages: value tests and the checks every field
parser shares. Each failing check raises :class:`~orchestrator.errors.SpecError` naming the field,
the value and what is accepted."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Mapping

from orchestrator.credentials import redact
from orchestrator.errors import SpecError

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def reject_unknown(data: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    """Refuse a key of ``data`` that is not in ``allowed``, suggesting the closest allowed one."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"Did you mean `{where}{close[0]}`?" if close else None
            raise SpecError(f"{where}{key}", data[key], f"one of the fields {', '.join(sorted(allowed))}", hint)


def require_whole(options: Mapping[str, Any], key: str, where: str, accepted: str = "a whole number of at least 1") -> None:
    """Refuse ``options[key]`` (when present) unless it is an ``int``."""
    if key in options and not is_int(options[key]):
        raise SpecError(f"{where}.{key}", options[key], accepted)


def option_types(options: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> None:
    """Each option must have its default's type: true/false for a boolean, a number of at least 1
    for a number (or a default of None), a string for a string."""
    for key, default in defaults.items():
        given = options[key]
        if isinstance(default, bool):
            if not isinstance(given, bool):
                raise SpecError(f"{where}.{key}", given, "true or false")
        elif isinstance(default, int) or default is None:
            if given is not None and (not is_number(given) or given < 1):
                raise SpecError(f"{where}.{key}", given, "a number of at least 1")
        elif isinstance(default, str) and not isinstance(given, str):
            raise SpecError(f"{where}.{key}", given, "a string")


def duration(value: Any, where: str) -> float | None:
    """Seconds from a number or a duration such as ``90s``, ``30m``, ``2h`` or ``1h30m``."""
    if value is None:
        return None
    accepted = "a number of seconds above 0, or a duration such as '90s', '30m', '2h' or '1h30m'"
    if is_number(value):
        if value <= 0:
            raise SpecError(where, value, accepted)
        return float(value)
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise SpecError(where, value, accepted)
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise SpecError(where, value, accepted)
    return float(total)


def url(value: Any, where: str, schemes: tuple[str, ...], example: str) -> str:
    """A URL with one of ``schemes``; a SQLite URL must name a file in an existing folder. An
    error message shows a password in the URL as ``***``."""
    shown = redact(value) if isinstance(value, str) else value
    if not isinstance(value, str) or "://" not in value and not value.startswith("databricks"):
        raise SpecError(where, shown, f"a URL such as {example}")
    scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in schemes:
        raise SpecError(where, shown, f"a URL with one of the schemes {', '.join(schemes)} (e.g. {example})")
    if scheme == "sqlite":
        if not value.startswith("sqlite:///") or len(value) <= len("sqlite:///"):
            raise SpecError(where, shown, "sqlite:///relative/path.db or sqlite:////absolute/path.db")
        folder = Path(os.path.expanduser(value[len("sqlite:///"):])).parent
        if not folder.is_dir():
            raise SpecError(where, shown, f"a SQLite file in an existing folder ({folder} does not exist)")
    return value
