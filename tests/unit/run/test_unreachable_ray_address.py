"""A Ray address that does not answer, or answers but not as Ray: one paragraph naming
``--address``, within seconds, before anything is written (no Ray started, no study created)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture
def no_ray_env(monkeypatch):
    """No cluster or token from the environment; Ray's join bounds restored after the test."""
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
                 "RAY_NUM_REDIS_GET_RETRIES", "RAY_py_gcs_connect_timeout_s"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_NUM_REDIS_GET_RETRIES", "2")
    monkeypatch.setenv("RAY_py_gcs_connect_timeout_s", "10")


def _study(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"name: t\nworkload: digits_mlp\nbudget: {{trials: 2, max_epochs: 1}}\n"
                    f"storage: sqlite:///{tmp_path}/optuna.db\ntracking_uri: sqlite:///{tmp_path}/mlflow.db\n"
                    f"results_dir: {tmp_path}/ray\n")
    return path


def _launch(tmp_path: Path, address: str, capsys) -> tuple[int, str, float]:
    """``stepsize launch`` in a process of its own (this one may hold a Ray of other tests)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "launch", str(_study(tmp_path)),
                           "--address", address, "--quiet"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr, time.monotonic() - start


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "ray").exists()


def test_a_refused_address_is_one_paragraph_naming_the_option(tmp_path, capsys, no_ray_env):
    code, err, seconds = _launch(tmp_path, "127.0.0.1:1", capsys)
    assert code == 1 and seconds < 60
    assert err.startswith("stepsize: cannot reach the Ray cluster at 127.0.0.1:1 (--address / `address`): "
                          "connection refused.") and err.count("\n") == 1
    assert "ray start --head" in err and "stepsize cluster up" in err and "Traceback" not in err
    _nothing_written(tmp_path)


def test_a_port_that_answers_but_is_not_ray_is_named(tmp_path, capsys, no_ray_env):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    port = server.getsockname()[1]
    try:
        code, err, seconds = _launch(tmp_path, f"127.0.0.1:{port}", capsys)
    finally:
        server.close()
    assert code == 1 and seconds < 60
    assert f"127.0.0.1:{port} (--address / `address`) answers, but not as a Ray cluster's GCS" in err
    assert err.count("\n") == 1
    _nothing_written(tmp_path)


def test_auto_through_ray_address_checks_that_address(tmp_path, capsys, no_ray_env, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    code, err, seconds = _launch(tmp_path, "auto", capsys)
    assert code == 1 and seconds < 60
    assert "cannot reach the Ray cluster at auto (" in err and "connection refused" in err
    _nothing_written(tmp_path)


def test_auto_with_no_cluster_says_how_to_start_one(no_ray_env):
    from orchestrator._compat.ray_config import auto_address
    from orchestrator.errors import ServiceUnreachable
    from orchestrator.run.ray_session import check_ray_address

    if auto_address() is not None:
        pytest.skip("a Ray cluster is running on this machine")
    with pytest.raises(ServiceUnreachable) as caught:
        check_ray_address("auto", "--address / `address`")
    message = str(caught.value)
    assert "`auto`" in message and "there is none" in message
    assert "stepsize cluster up" in message and "ray start --head" in message


def test_a_ray_client_address_is_refused_before_anything(workdir, capsys):
    from orchestrator.cli import main

    (workdir / "study.yaml").write_text("name: rc\nbudget: {trials: 2, max_epochs: 2}\n")
    code = main(["launch", "study.yaml", "--address", "ray://10.0.0.5:10001"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("stepsize: invalid study spec: `address` is 'ray://10.0.0.5:10001'; expected null (start "
                          "Ray on this machine), 'auto' or 'HOST:PORT' (the head's GCS address). A Ray Client address")
    assert "--address HOST:6379" in err and sorted(p.name for p in workdir.iterdir()) == ["study.yaml"]


def test_a_ray_client_address_in_ray_address_is_refused(monkeypatch):
    import pytest

    from orchestrator.errors import ServiceUnreachable
    from orchestrator.run.ray_session import preflight

    monkeypatch.setenv("RAY_ADDRESS", "ray://10.0.0.5:10001")
    with pytest.raises(ServiceUnreachable, match="RAY_ADDRESS is 'ray://10.0.0.5:10001', a Ray Client address"):
        preflight(None)
