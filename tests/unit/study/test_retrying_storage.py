"""The driver's patient storage: retried while the database cannot be reached, one line when it
starts waiting and one when it is back, a stepsize error past its patience, no retry of a bug."""

from __future__ import annotations

import logging

import optuna
import pytest
import sqlalchemy.exc

from orchestrator.errors import StepsizeError, StorageGaveUp
from orchestrator.spec import spec_from_mapping
from orchestrator.study.retrying import RetryingStorage, connection_cause

URL = "postgresql+psycopg://bob:secret@db.example:5432/optuna"


def _down(text: str = "connection refused") -> Exception:
    try:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(text))
    except sqlalchemy.exc.OperationalError as exc:
        try:  # as Optuna's RDB storage reports a failed commit
            raise optuna.exceptions.StorageInternalError("invalid data in the commit") from exc
        except optuna.exceptions.StorageInternalError as wrapped:
            return wrapped


class Flaky:
    """Fails ``failures`` times with ``error``, then answers."""

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def get_all_studies(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return ["ok"]


def _storage(inner, patience_s: float = 60.0) -> RetryingStorage:
    return RetryingStorage(inner, URL, patience_s, sleep=lambda s: None)


def test_a_connection_error_is_retried_with_one_line_down_and_one_back(caplog):
    inner = Flaky(3, _down())
    with caplog.at_level(logging.WARNING, logger="orchestrator.study"):
        assert _storage(inner).get_all_studies() == ["ok"]
    lines = [r.getMessage() for r in caplog.records if r.name == "orchestrator.study"]
    assert inner.calls == 4 and len(lines) == 2, lines
    assert "bob:***@db.example" in lines[0] and "secret" not in " ".join(lines)
    assert "connection refused" in lines[0] and "storage_patience" in lines[0]
    assert "is back after" in lines[1]


def test_past_its_patience_it_raises_a_stepsize_error_and_then_fails_fast():
    inner = Flaky(100, _down())
    storage = _storage(inner, patience_s=0.0)
    with pytest.raises(StorageGaveUp) as caught:
        storage.get_all_studies()
    assert isinstance(caught.value, StepsizeError) and caught.value.exit_code == 1
    assert "connection refused" in str(caught.value) and "secret" not in str(caught.value)
    calls = inner.calls
    with pytest.raises(StorageGaveUp):
        storage.get_all_studies()
    assert inner.calls == calls + 1, "after giving up, one try and no more waiting"


def test_a_bug_is_not_retried():
    inner = Flaky(1, ValueError("boom"))
    with pytest.raises(ValueError):
        _storage(inner).get_all_studies()
    assert inner.calls == 1


@pytest.mark.parametrize("text, retried", [("database is locked", True), ("database or disk is full", True),
                                           ("unable to open database file", True), ("no such table: trials", False)])
def test_sqlite_errors_that_pass_are_retried(text, retried):
    import sqlite3

    error = sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError(text))
    assert (connection_cause(error) is not None) == retried


def test_every_storage_method_is_delegated():
    storage = optuna.storages.InMemoryStorage()
    wrapped = _storage(storage)
    study = optuna.create_study(storage=wrapped, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert len(optuna.load_study(study_name="s", storage=wrapped).trials) == 3


@pytest.mark.parametrize("given, seconds", [(None, 300.0), (5, 300.0), ("90s", 90.0), ("2m", 120.0), (0.5, 30.0)])
def test_storage_patience_is_minutes_unless_a_unit_says_otherwise(given, seconds):
    data = {"name": "s"} if given is None else {"name": "s", "storage_patience": given}
    spec = spec_from_mapping(data)
    assert spec.storage_patience_s == seconds
    assert spec_from_mapping(spec.to_dict()).storage_patience_s == seconds
