"""Shared fixtures. Integration tests (everything under tests/integration/, marked ``integration``
here so that no file can forget it) run real Ray (started once per session), MLflow servers,
PostgreSQL or Chromium; unit tests (tests/unit/) need none of them. ``pytest -m "not integration"``
runs the unit tests only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = Path(__file__).resolve().parent / "integration"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# A study that ends with its tracking store away starts a background writer: in tests it gives up
# after 2 minutes rather than a day (tests point at servers that never come back).
os.environ.setdefault("STEPSIZE_REPLAY_PATIENCE", "120")


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/integration/ ``integration``."""
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder: relative storage URLs land here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (as ``stepsize launch`` would start it)."""
    from orchestrator.run.ray_session import ensure_ray

    os.chdir(ROOT)  # workers import test workloads (tests.workloads) from the repository root
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    ensure_ray(None)
    yield
    import ray

    ray.shutdown()


def study_spec(tmp_path: Path, **fields):
    """A small, fast digits study spec with storage and Ray results inside ``tmp_path``."""
    from orchestrator.spec import spec_from_mapping

    data = {
        "name": "t",
        "workload": "digits_mlp",
        "budget": {"trials": 6, "max_epochs": 4},
        "concurrency": 2,
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "results_dir": str(tmp_path / "ray"),
    }
    data.update(fields)
    return spec_from_mapping(data)


def _serve_postgres():
    from tests.postgres_server import PostgresServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (see tests/postgres_server.py)."""
    yield from _serve_postgres()


@pytest.fixture
def own_postgres():
    """A real PostgreSQL server for one test alone, which it may stop and start (an outage)."""
    yield from _serve_postgres()
