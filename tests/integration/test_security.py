"""What a study exposes, tried on the real components: a password in a URL is kept out of every
file of the study and every line of output; the Ray a study starts listens on 127.0.0.1 only; the
token that protects it is readable by its owner only."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cluster.local.processes import descendants
from tests.conftest import ROOT

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]
SECRET = "Sup3r-S3cret-pw"


def sleeper(config: dict, trial) -> None:
    """One second an epoch: long enough to look at the study's sockets while it runs."""
    for epoch in range(1, trial.max_epochs + 1):
        time.sleep(1.0)
        trial.report(val_loss=config["learning_rate"] / epoch, train_loss=1.0)


def _run(args, cwd, home, env=None, timeout=600):
    full = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), **(env or {})}
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS"):
        full.pop(name, None)
    return subprocess.run(STEPSIZE + args, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def _study_file(folder: Path, **fields) -> Path:
    data = {"name": "secure", "workload": "digits_mlp", "budget": {"trials": 3, "max_epochs": 2},
            "concurrency": 2, "storage": f"sqlite:///{folder}/optuna.db", "tracking_uri": f"sqlite:///{folder}/mlflow.db",
            "results_dir": str(folder / "ray"), "search_space": "lr_only"}
    data.update(fields)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _files_holding(secret: str, root: Path) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.name == "study.yaml" and needle in p.read_bytes()]


def _database_text(url: str) -> str:
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        text = []
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')
            text.append(repr(cursor.fetchall()))
    return "\n".join(text)


def test_a_password_in_the_storage_url_is_in_no_file_and_no_line_of_output(postgres, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    plain = postgres.database("secure")  # postgresql+psycopg://postgres@127.0.0.1:PORT/DB
    with_password = plain.replace("postgres@", f"postgres:{SECRET}@")
    study_file = _study_file(tmp_path, storage=with_password)

    outputs = []
    done = _run(["launch", str(study_file)], cwd=tmp_path, home=home)
    outputs.append(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 trials" in done.stdout
    # The error paths print the storage too: a taken name, a missing study, a wrong --trials.
    again = _run(["launch", str(study_file)], cwd=tmp_path, home=home)
    outputs.append(again.stdout + again.stderr)
    assert again.returncode == 2 and "postgres:***@127.0.0.1" in again.stderr
    for args in (["status", "secure", "--storage", with_password],
                 ["status", "nothing-here", "--storage", with_password],
                 ["resume", "secure", "--storage", with_password, "--trials", "2"],
                 ["best", "secure", "--storage", with_password]):
        done = _run(args, cwd=tmp_path, home=home)
        outputs.append(done.stdout + done.stderr)
    assert "no study named 'nothing-here'" in outputs[3] and "postgres:***@" in outputs[3]
    assert "`--trials` is 2" in outputs[4]

    leaks = [line for text in outputs for line in text.splitlines() if SECRET in line]
    assert not leaks, leaks
    assert not _files_holding(SECRET, tmp_path), "the password is in files of the study"
    database = _database_text(plain)
    assert SECRET not in database
    assert "postgresql+psycopg://postgres@127.0.0.1" in database  # the stored spec, without it


def test_a_password_given_as_a_reference_is_stored_as_the_reference(postgres, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    plain = postgres.database("secref")
    template = plain.replace("postgres@", "postgres:${STEPSIZE_TEST_DB_PASSWORD}@")
    study_file = _study_file(tmp_path, storage=template, budget={"trials": 2, "max_epochs": 1})
    missing = _run(["launch", str(study_file)], cwd=tmp_path, home=home)
    assert missing.returncode == 2 and "STEPSIZE_TEST_DB_PASSWORD is not" in missing.stderr
    done = _run(["launch", str(study_file)], cwd=tmp_path, home=home, env={"STEPSIZE_TEST_DB_PASSWORD": SECRET})
    assert done.returncode == 0, done.stderr[-3000:]
    assert SECRET not in done.stdout + done.stderr and not _files_holding(SECRET, tmp_path)
    database = _database_text(plain)
    assert SECRET not in database and "${STEPSIZE_TEST_DB_PASSWORD}" in database


def _listening(pids: set[int]) -> list[str]:
    """``address:port`` of every TCP socket the processes ``pids`` listen on."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids]


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::1", "::ffff:127.0.0.1") or host.startswith("127.")


def test_a_local_study_listens_on_loopback_only_and_its_token_is_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    study_file = _study_file(tmp_path, workload="tests.integration.test_security:sleeper",
                             budget={"trials": 4, "max_epochs": 8}, scheduler="none")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home)}
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS"):
        env.pop(name, None)
    driver = subprocess.Popen(STEPSIZE + ["launch", str(study_file), "--quiet"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            tree = descendants({driver.pid}) | {driver.pid}
            sockets = _listening(tree)
            seen.update(sockets)
            if len(seen) >= 5 and any("ray::" in _command(pid) for pid in tree):  # trials are running
                break
            time.sleep(1.0)
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-3000:]
    assert len(seen) >= 5, seen  # GCS, raylet, the driver, workers: their sockets were seen
    assert all(_loopback(address) for address in seen), sorted(seen)
    token = home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) == 64
    assert "can be read by other users" not in err


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_token_readable_by_others_is_named_with_the_fix(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    token = home / ".ray" / "auth_token"
    token.write_text("a" * 64)
    token.chmod(0o644)
    study_file = _study_file(tmp_path, budget={"trials": 1, "max_epochs": 1})
    done = _run(["launch", str(study_file), "--quiet"], cwd=tmp_path, home=home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{token} can be read by other users (mode 0644)" in done.stderr and f"chmod 600 {token}" in done.stderr
