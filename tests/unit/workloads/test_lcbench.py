"""The lcbench workload: reports match the surrogate, presets load. (A study through Ray:
tests/integration/workloads/test_lcbench.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.errors import SpecError
from orchestrator.trial.context import TrialContext
from orchestrator.workloads import lcbench
from tests.conftest import ROOT

DATA = ROOT.parent / "shared" / "data" / "lcbench"
_reason = lcbench.missing_reason(DATA)
needs_data = pytest.mark.skipif(_reason is not None, reason=f"lcbench data not available: {_reason}")

CONFIG = {"batch_size": 64, "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0.001,
          "num_layers": 2, "max_units": 512, "max_dropout": 0.2}


def _direct(task: str, config: dict, epochs: np.ndarray) -> np.ndarray:
    """One surrogate call per epoch, inputs built by hand in the documented order."""
    surrogate = lcbench.load_surrogate(DATA)
    rows = []
    for epoch in epochs:
        x_cont = np.array([[epoch, config["batch_size"], config["learning_rate"], config["momentum"],
                            config["weight_decay"], config["num_layers"], config["max_units"],
                            config["max_dropout"]]], dtype=np.float32)
        x_cat = np.array([[surrogate.task_codes[task]]], dtype=np.int32)
        rows.append(surrogate.session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0][0])
    return np.array(rows)


def _run(config: dict, max_epochs: int = lcbench.MAX_EPOCHS, **options) -> list[dict]:
    reports: list[dict] = []
    trial = TrialContext(number=0, max_epochs=max_epochs, seed=0, options={"data_dir": str(DATA), **options},
                         _sink=reports.append)
    lcbench.train(config, trial)
    return reports


@needs_data
def test_reports_match_a_direct_surrogate_call():
    reports = _run(CONFIG, task="189873")
    assert [r["epoch"] for r in reports] == list(range(1, 52))
    direct = _direct("189873", CONFIG, np.arange(1, 53))  # surrogate epochs 1..52
    got = np.array([[r["val_accuracy"], r["val_cross_entropy"], r["val_balanced_accuracy"],
                     r["test_cross_entropy"], r["test_balanced_accuracy"]] for r in reports])
    np.testing.assert_allclose(got, direct[1:, 1:], rtol=1e-5)
    np.testing.assert_allclose([r["epoch_time_s"] for r in reports], np.diff(direct[:, 0]), rtol=1e-4, atol=1e-4)
    assert all(r["val_loss"] == r["val_cross_entropy"] for r in reports)


@needs_data
def test_missing_parameters_take_the_surrogate_defaults():
    partial = {"batch_size": 64, "learning_rate": 0.01, "momentum": 0.9}
    defaults = {"weight_decay": 0.050005, "num_layers": 3, "max_units": 256, "max_dropout": 0.5}
    assert _run(partial, max_epochs=3) == _run({**partial, **defaults}, max_epochs=3)


@needs_data
def test_unknown_task_and_out_of_range_values_name_the_field():
    with pytest.raises(SpecError, match="workload_options.task") as info:
        _run(CONFIG, max_epochs=1, task="18987")
    assert "189873" in str(info.value)
    with pytest.raises(SpecError, match="search_space.learning_rate"):
        _run({**CONFIG, "learning_rate": 0.5}, max_epochs=1)


def test_missing_folder_names_the_option_and_the_variable(tmp_path):
    reason = lcbench.missing_reason(tmp_path)
    assert "workload_options.data_dir" in reason and lcbench.ENV_VAR in reason and "model.onnx" in reason
    with pytest.raises(SpecError, match="data_dir"):
        lcbench.load_surrogate(str(tmp_path))


def test_folder_comes_from_option_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(lcbench.ENV_VAR, str(tmp_path))
    assert lcbench.data_dir() == tmp_path.resolve()
    assert lcbench.data_dir("/elsewhere") == lcbench.Path("/elsewhere")


def test_presets_load():
    from search_spaces import load_preset

    full, small = load_preset("lcbench_7d"), load_preset("lcbench_3d")
    assert full.names == ["batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units", "max_dropout"]
    assert small.names == ["batch_size", "learning_rate", "momentum"]
