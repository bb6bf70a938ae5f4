"""Trials with several DDP workers under Ray Train v2 are refused, with the setting to change,
before anything is written (no Ray is started)."""

from __future__ import annotations

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import spec_from_mapping


def test_ddp_trials_refuse_ray_train_v2_with_the_setting_to_change(monkeypatch):
    from orchestrator.trial.ddp import make_ddp_trainable

    spec = spec_from_mapping({"name": "x", "resources": {"cpus": 2, "workers": 2}})
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "1")
    with pytest.raises(SpecError) as caught:
        make_ddp_trainable(spec)
    assert "resources.workers" in str(caught.value) and "RAY_TRAIN_V2_ENABLED" in str(caught.value)
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "0")
    assert make_ddp_trainable(spec).__name__ == "DDPTrial"


def test_launch_refuses_ddp_under_ray_train_v2_before_writing_anything(monkeypatch, tmp_path):
    from orchestrator.api import launch

    spec = spec_from_mapping({"name": "x", "resources": {"cpus": 2, "workers": 2},
                              "storage": f"sqlite:///{tmp_path}/optuna.db", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                              "results_dir": str(tmp_path / "ray")})
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "1")
    with pytest.raises(SpecError, match="resources.workers"):
        launch(spec, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
