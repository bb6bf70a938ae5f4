"""Credentials in URLs: stored without the password, printed with ``***``, ``${NAME}`` filled in
only for the connection."""

from __future__ import annotations

import pytest

from orchestrator.credentials import check_variables, expand, for_storing, has_password, redact, redact_text
from orchestrator.errors import SpecError

SECRET = "s3cr3t-p@ss"


@pytest.mark.parametrize("url,stored,shown", [
    (f"postgresql+psycopg://tuner:{SECRET}@db:5432/optuna", "postgresql+psycopg://tuner@db:5432/optuna",
     "postgresql+psycopg://tuner:***@db:5432/optuna"),
    (f"https://me:{SECRET}@mlflow.internal", "https://me@mlflow.internal", "https://me:***@mlflow.internal"),
    ("postgresql://tuner@db/optuna", "postgresql://tuner@db/optuna", "postgresql://tuner@db/optuna"),
    ("postgresql://tuner:${PGPASSWORD}@db/optuna", "postgresql://tuner:${PGPASSWORD}@db/optuna",
     "postgresql://tuner:${PGPASSWORD}@db/optuna"),
    ("sqlite:///stepsize.db", "sqlite:///stepsize.db", "sqlite:///stepsize.db"),
    ("127.0.0.1:6379", "127.0.0.1:6379", "127.0.0.1:6379"),
])
def test_a_password_is_stored_without_and_shown_as_stars(url, stored, shown):
    assert for_storing(url) == stored and redact(url) == shown
    assert SECRET not in for_storing(url) and SECRET not in redact(url)
    assert has_password(url) == (SECRET in url)


def test_passwords_in_any_text_are_starred():
    text = (f"API request to http://u:{SECRET}@h:5000/api/2.0 failed; "
            f"engine 'postgresql+psycopg://tuner:{SECRET}@db/x' and postgresql://a:${{PW}}@h")
    cleaned = redact_text(text)
    assert SECRET not in cleaned and "p@ss" not in cleaned
    assert "http://u:***@h:5000/api/2.0" in cleaned and "postgresql://a:${PW}@h" in cleaned


def test_a_reference_is_filled_in_for_the_connection_and_refused_when_unset(monkeypatch):
    url = "postgresql+psycopg://tuner:${STEPSIZE_TEST_PW}@db/optuna"
    monkeypatch.delenv("STEPSIZE_TEST_PW", raising=False)
    with pytest.raises(SpecError) as refused:
        check_variables(url, "storage")
    assert refused.value.field == "storage" and "STEPSIZE_TEST_PW is not" in str(refused.value)
    monkeypatch.setenv("STEPSIZE_TEST_PW", SECRET)
    check_variables(url, "storage")
    assert expand(url) == f"postgresql+psycopg://tuner:{SECRET}@db/optuna"


def test_the_stored_spec_and_a_bad_url_message_hold_no_password(tmp_path):
    from orchestrator.spec import spec_from_mapping

    url = f"postgresql+psycopg://tuner:{SECRET}@db/optuna"
    spec = spec_from_mapping({"name": "s", "storage": url, "tracking_uri": f"http://me:{SECRET}@mlflow:5000"})
    assert spec.storage == url  # this process connects with it
    stored = spec.to_stored_dict()
    assert SECRET not in repr(stored) and stored["storage"] == "postgresql+psycopg://tuner@db/optuna"
    with pytest.raises(SpecError) as bad:
        spec_from_mapping({"name": "s", "storage": f"oracle://tuner:{SECRET}@db/x"})
    assert SECRET not in str(bad.value) and "tuner:***@db" in str(bad.value)


def test_error_output_of_the_command_stars_passwords(capsys):
    from orchestrator.cli import _report_error

    assert _report_error(RuntimeError(f"could not reach postgresql://tuner:{SECRET}@db/x")) == 1
    assert _report_error(LookupError(f"no study in postgresql://tuner:{SECRET}@db/x")) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and err.count("tuner:***@db") == 2


def test_stepsize_loggers_star_passwords_in_messages_and_tracebacks():
    import logging

    from orchestrator.credentials import protected_logger

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = protected_logger("orchestrator.test_credentials")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("MLflow at %s is unreachable", f"http://me:{SECRET}@mlflow:5000")
        try:
            raise ConnectionError(f"cannot reach postgresql://tuner:{SECRET}@db/optuna")
        except ConnectionError:
            logger.error("writer failed", exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2 and all(SECRET not in text for text in records)
    assert "http://me:***@mlflow:5000" in records[0] and "postgresql://tuner:***@db" in records[1]
    assert protected_logger("orchestrator.test_credentials").filters == logger.filters  # one filter, not two


def test_a_connection_refuses_an_unset_reference_and_links_drop_the_user(monkeypatch):
    from orchestrator.credentials import connectable, without_userinfo

    monkeypatch.delenv("STEPSIZE_TEST_TOKEN", raising=False)
    with pytest.raises(SpecError, match="tracking_uri"):
        connectable("http://me:${STEPSIZE_TEST_TOKEN}@mlflow:5000", "tracking_uri")
    assert without_userinfo(f"https://me:{SECRET}@mlflow:5000/#/runs") == "https://mlflow:5000/#/runs"
