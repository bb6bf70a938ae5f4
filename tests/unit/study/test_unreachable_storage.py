"""A storage that cannot be opened: one paragraph naming ``storage`` / ``--storage``, the URL
without its password, the reason and the fix, within seconds, before anything is written."""

from __future__ import annotations

import time

import pytest

from orchestrator.cli import main


def _run(args: list[str], capsys) -> tuple[int, str, float]:
    start = time.monotonic()
    code = main(args)
    return code, capsys.readouterr().err, time.monotonic() - start


def _study(tmp_path, storage: str):
    path = tmp_path / "study.yaml"
    path.write_text(f"name: t\nworkload: digits_mlp\nbudget: {{trials: 2, max_epochs: 1}}\nstorage: '{storage}'\n"
                    f"tracking_uri: sqlite:///{tmp_path}/mlflow.db\nresults_dir: {tmp_path}/ray\n")
    return str(path)


def test_a_refused_postgresql_storage_names_the_option_and_hides_the_password(tmp_path, capsys):
    url = "postgresql+psycopg://tuner:secret@127.0.0.1:1/optuna"
    for args in (["launch", _study(tmp_path, url), "--quiet"], ["status", "t", "--storage", url],
                 ["best", "t", "--storage", url], ["resume", "t", "--storage", url]):
        code, err, seconds = _run(args, capsys)
        assert code == 1 and seconds < 60, (args, err)
        assert err == ("stepsize: cannot connect to the Optuna storage at postgresql+psycopg://tuner:***@127.0.0.1:1/"
                       "optuna (`storage` in the study file, --storage on the command line): connection refused. "
                       "Start the database server, check the host, port and database name in the URL, and the "
                       "password (~/.pgpass or PGPASSWORD for PostgreSQL); nothing was created.\n")
    assert not (tmp_path / "ray").exists()


@pytest.mark.parametrize("url, expected", [
    ("mysql://tuner@127.0.0.1/optuna", "The Python driver for `mysql` is not installed (No module named 'MySQLdb')"),
    ("nosuchdb://host/optuna", "SQLAlchemy knows no database `nosuchdb`: fix the scheme"),
])
def test_an_unusable_url_is_a_spec_error_naming_storage(tmp_path, capsys, url, expected):
    # `launch` checks the scheme with the rest of the study file; `status`, `best`, `resume` here
    code, err, seconds = _run(["status", "t", "--storage", url], capsys)
    assert code == 2 and seconds < 60
    assert err.startswith(f"stepsize: invalid study spec: `storage` is {url!r}; expected an SQLAlchemy database URL")
    assert expected in err and err.count("\n") == 1


def test_a_missing_driver_is_refused_by_launch_before_anything_starts(tmp_path, capsys):
    code, err, _ = _run(["launch", _study(tmp_path, "mysql://tuner@127.0.0.1/optuna"), "--quiet"], capsys)
    assert code == 2 and "The Python driver for `mysql` is not installed" in err and "--storage" in err
    assert not (tmp_path / "ray").exists()


def test_an_sqlite_file_in_a_missing_folder_is_refused_before_anything_starts(tmp_path, capsys):
    folder = tmp_path / "no" / "such"
    code, err, seconds = _run(["resume", "t", "--storage", f"sqlite:///{folder}/optuna.db"], capsys)
    assert code == 2 and seconds < 60
    assert f"`storage` is 'sqlite:///{folder}/optuna.db'" in err
    assert f"The folder {folder} does not exist: create it (mkdir -p {folder})" in err and "--storage" in err
    assert not (tmp_path / "no").exists() and not (tmp_path / "ray").exists()


def test_an_sqlite_file_in_a_folder_that_cannot_be_written_is_refused(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        import tempfile

        try:
            tempfile.TemporaryFile(dir=folder).close()
            pytest.skip("this user (root) can write a read-only folder")
        except OSError:
            pass
        code, err, _ = _run(["status", "t", "--storage", f"sqlite:///{folder}/optuna.db"], capsys)
    finally:
        folder.chmod(0o700)
    assert code == 2 and f"The folder {folder} is not writable" in err
    assert list(folder.iterdir()) == []
