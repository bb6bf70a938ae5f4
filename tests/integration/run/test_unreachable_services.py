"""Services that cannot be used, with real servers: a token-authenticated Ray cluster reached
without (or with another) token, a PostgreSQL that was stopped.
Each answers in one paragraph naming the option and the fix, within seconds, writing nothing."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cluster.local.processes import kill, processes_naming, signal_group

ROOT = Path(__file__).resolve().parents[3]
STEPSIZE = str(Path(sys.executable).with_name("stepsize"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def token_head():
    """A Ray head started with token authentication (as `stepsize cluster up` starts its nodes)
    and a Ray Client server; yields (GCS port, client port, token file)."""
    folder = Path(tempfile.mkdtemp(prefix="ssu-", dir="/tmp"))
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    port, client_port = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    log = folder / "head.log"
    with open(log, "wb") as out:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--block", "--head",
                                 "--port", str(port), "--ray-client-server-port", str(client_port), "--num-cpus", "1",
                                 "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir",
                                 str(folder / "t")], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text() and time.monotonic() < deadline and head.poll() is None:
        time.sleep(0.5)
    try:
        assert "Ray runtime started" in log.read_text(), log.read_text()
        yield port, client_port, token
    finally:
        signal_group(head.pid, signal.SIGTERM)
        try:
            head.wait(20)
        except subprocess.TimeoutExpired:
            signal_group(head.pid, signal.SIGKILL)
        for pid in processes_naming(str(folder) + "/"):
            kill(pid)


def _driver_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A driver's environment without any token: a HOME without ~/.ray/auth_token."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    (tmp_path / "home").mkdir(exist_ok=True)
    return {**env, "HOME": str(tmp_path / "home"), **extra}


def _launch(tmp_path: Path, address: str, env: dict[str, str]) -> tuple[int, str, float]:
    study = tmp_path / "study.yaml"
    study.write_text(f"name: t\nworkload: digits_mlp\nbudget: {{trials: 2, max_epochs: 1}}\n"
                     f"storage: sqlite:///{tmp_path}/optuna.db\ntracking_uri: sqlite:///{tmp_path}/mlflow.db\n"
                     f"results_dir: {tmp_path}/ray\n")
    start = time.monotonic()
    done = subprocess.run([STEPSIZE, "launch", str(study), "--address", address, "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr, time.monotonic() - start


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "ray").exists()


HOW = ("export RAY_AUTH_MODE=token and either RAY_AUTH_TOKEN=TOKEN or RAY_AUTH_TOKEN_PATH=FILE (`ray get-auth-token` "
       "on a node of the cluster prints the token; for a cluster of `stepsize cluster up`, `stepsize cluster status` "
       "prints its token file and the export line).")


def test_a_token_cluster_without_the_token_is_named_at_once(token_head, tmp_path):
    port, _, _ = token_head
    code, err, seconds = _launch(tmp_path, f"127.0.0.1:{port}", _driver_env(tmp_path))
    assert code == 1 and seconds < 60, err
    assert err == (f"stepsize: the Ray cluster at 127.0.0.1:{port} (--address / `address`) uses token "
                   "authentication and this driver has no token (RAY_AUTH_MODE is not `token`). Give the driver the "
                   f"cluster's token before the command: {HOW}\n")
    _nothing_written(tmp_path)


def test_another_clusters_token_is_named(token_head, tmp_path):
    port, _, _ = token_head
    env = _driver_env(tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    code, err, seconds = _launch(tmp_path, f"127.0.0.1:{port}", env)
    assert code == 1 and seconds < 60, err
    assert "refused this driver's token (from RAY_AUTH_TOKEN): it is not this cluster's token" in err
    assert err.count("\n") == 1 and HOW in err
    _nothing_written(tmp_path)


def test_the_driver_joins_with_the_token(token_head, tmp_path):
    port, _, token = token_head
    script = ("import sys, ray; from orchestrator.run.ray_session import ensure_ray; ensure_ray(sys.argv[1]); "
              "print(ray.cluster_resources().get('CPU')); ray.shutdown()")
    env = _driver_env(tmp_path, RAY_AUTH_TOKEN_PATH=str(token))  # stepsize turns token mode on for it
    done = subprocess.run([sys.executable, "-c", script, f"127.0.0.1:{port}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "1.0", done.stderr


def test_a_stopped_postgresql_is_named_with_the_option_and_the_fix(tmp_path):
    from tests.postgres_server import PostgresServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = PostgresServer().start()
    url = server.database("gone").replace("postgres@", "postgres:secret@")
    server.stop()
    start = time.monotonic()
    done = subprocess.run([STEPSIZE, "status", "t", "--storage", url], cwd=ROOT, env=_driver_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - start
    assert done.returncode == 1 and seconds < 60
    shown = url.replace("secret", "***")
    assert done.stderr == (f"stepsize: cannot connect to the Optuna storage at {shown} (`storage` in the study file, "
                           "--storage on the command line): connection refused. Start the database server, check "
                           "the host, port and database name in the URL, and the password (~/.pgpass or PGPASSWORD "
                           "for PostgreSQL); nothing was created.\n")
