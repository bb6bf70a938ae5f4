"""The error raised for a bad field, shared by search spaces and study specs."""

from __future__ import annotations

from typing import Any


class SpaceError(ValueError):
    """A field of a study spec or search space holds a value that is not accepted.

    ``field`` is the dotted path of the field (``search_space.learning_rate.low``), ``value``
    what was given and ``accepted`` what would be accepted. ``str()`` is a one-paragraph message
    that names all three and how to fix it.
    """

    def __init__(self, field: str, value: Any, accepted: str, hint: str | None = None):
        self.field = field
        self.value = value
        self.accepted = accepted
        self.hint = hint
        shown = "missing" if value is None else repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        message = f"`{field}` is {shown}; expected {accepted}."
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __reduce__(self):  # keep field, value and hint when Ray ships the error between processes
        return (type(self), (self.field, self.value, self.accepted, self.hint))
