"""Errors that stepsize reports to users as one clear paragraph (exit code 2 on the CLI)."""

from __future__ import annotations

from search_spaces.errors import SpaceError


class SpecError(SpaceError):
    """A study spec (or a command-line override of it) has a field that is not accepted.

    Raised before anything is created in any store. ``str()`` names the field, the value and
    what is accepted.
    """


class StudyNotFoundError(LookupError):
    """No study of that name is in the given Optuna storage."""

    def __init__(self, name: str, storage: str, known: list[str]):
        self.name = name
        self.storage = storage
        listing = ", ".join(known[:10]) if known else "none"
        super().__init__(
            f"no study named {name!r} in storage {storage}; studies there: {listing}. "
            "Pass --storage with the URL the study was launched with, or check the name."
        )
