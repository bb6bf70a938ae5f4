"""The lcbench workload: a small study through Ray completes."""

from __future__ import annotations

import pytest

from orchestrator.workloads import lcbench
from tests.conftest import ROOT, study_spec

DATA = ROOT.parent / "shared" / "data" / "lcbench"
_reason = lcbench.missing_reason(DATA)
needs_data = pytest.mark.skipif(_reason is not None, reason=f"lcbench data not available: {_reason}")


@needs_data
def test_a_small_study_through_ray_completes(ray_local, tmp_path):
    from orchestrator.api import launch

    spec = study_spec(
        tmp_path,
        workload="lcbench",
        workload_options={"task": "189873", "data_dir": str(DATA)},
        search_space="lcbench_3d",
        objective={"metric": "val_accuracy", "mode": "max"},
        budget={"trials": 6, "max_epochs": 9},
    )
    summary = launch(spec, quiet=True)
    assert summary.total == 6 and summary.counts.get("FAIL", 0) == 0
    assert 0 < summary.best_value <= 100
