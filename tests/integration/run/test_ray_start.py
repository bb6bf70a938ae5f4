"""A Ray that cannot start on this machine: one line naming the cause, exit 1, and no study or
MLflow record left behind, so the study's name stays free."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import optuna

from tests.conftest import ROOT

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_a_ray_that_cannot_start_leaves_no_study_behind(tmp_path):
    # Ray's socket paths under this folder are longer than Linux allows: ray.init fails.
    unusable = tempfile.mkdtemp(prefix="r" * 100, dir="/tmp")
    study = tmp_path / "study.yaml"
    study.write_text(f"name: t\nworkload: digits_mlp\nbudget: {{trials: 2, max_epochs: 1}}\n"
                     f"storage: sqlite:///{tmp_path}/optuna.db\ntracking_uri: sqlite:///{tmp_path}/mlflow.db\n"
                     f"results_dir: {tmp_path}/ray\n")
    done = subprocess.run(STEPSIZE + ["launch", str(study), "--quiet"], cwd=tmp_path, env=_env(RAY_TMPDIR=unusable),
                          capture_output=True, text=True, timeout=300)
    shutil.rmtree(unusable, ignore_errors=True)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "AF_UNIX path length" in done.stderr and "Traceback" not in done.stderr
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/optuna.db") == []
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow record was begun
