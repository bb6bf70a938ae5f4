"""``workload: {script: ...}`` in the study file: how it is checked, stored and turned into the
script's command line, and the reporting API outside a study."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import load_spec, spec_from_mapping
from orchestrator.workloads.script import ScriptWorkload, flag_value
from tests.conftest import ROOT

SPACE = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
         "batch_size": {"type": "categorical", "choices": [16, 32]},
         "nesterov": {"type": "categorical", "choices": [True, False]}}


def _spec(workload, **fields):
    return spec_from_mapping({"name": "s", "workload": workload, "search_space": SPACE, **fields}, base_dir=ROOT)


def test_a_relative_script_is_taken_from_the_study_files_folder_and_stored_absolute(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "study.yaml").write_text("workload: {script: train.py}\nsearch_space: {learning_rate: "
                                         "{type: float, low: 0.001, high: 1.0, log: true}}\n")
    spec = load_spec(tmp_path / "study.yaml")
    assert spec.workload.script == str(tmp_path / "train.py") and spec.workload.cwd == str(tmp_path)
    assert str(spec.workload) == f"script {tmp_path / 'train.py'}"
    again = spec_from_mapping(spec.to_stored_dict())  # as resume reads it back, from anywhere
    assert again.workload == spec.workload


def test_the_command_line_has_the_flags_named_as_the_study_says():
    workload = _spec({"script": "tests/scripts/argparse_train.py", "args": ["--data", 3],
                      "flags": {"learning_rate": "--lr", "nesterov": None, "max_epochs": "--epochs"}}).workload
    config = {"learning_rate": 0.012345678901, "batch_size": 32, "nesterov": True}
    line = workload.argv(config, {"max_epochs": 7, "seed": 3})
    assert line[:3] == [sys.executable, "-u", workload.script]
    assert line[3:] == ["--data", "3", "--lr", "0.012345678901", "--batch_size", "32", "--epochs", "7"]
    dashed = _spec({"script": "tests/scripts/argparse_train.py", "flag_style": "dash"}).workload
    assert dashed.argv({"learning_rate": 0.1, "batch_size": 16}, {}) [3:] == [
        "--learning-rate", "0.1", "--batch-size", "16"]
    quiet = _spec({"command": ["bash", "run.sh"], "pass_flags": False}).workload
    assert quiet.argv(config, {"max_epochs": 7}) == ["bash", "run.sh"]
    assert quiet.parameter_environment(config) == {"STEPSIZE_PARAM_LEARNING_RATE": "0.012345678901",
                                                    "STEPSIZE_PARAM_BATCH_SIZE": "32", "STEPSIZE_PARAM_NESTEROV": "true"}
    assert [flag_value(v) for v in (False, 1e-05, 64, "adam")] == ["false", "1e-05", "64", "adam"]


@pytest.mark.parametrize("workload, fields, message", [
    ({"script": "missing.py"}, {}, "`workload.script` is 'missing.py'; expected the path of an existing Python script"),
    ({"script": "tests/scripts/argparse_train.py", "command": ["x"]}, {}, "exactly one of `script: train.py`"),
    ({}, {}, "exactly one of `script: train.py`"),
    ({"command": "python train.py"}, {}, "`workload.command` is 'python train.py'; expected a list of strings"),
    ({"script": "tests/scripts/argparse_train.py", "flags": {"lr": "--lr"}}, {},
     "`workload.flags.lr` is '--lr'; expected a name of the search space (learning_rate, batch_size, nesterov) or one of max_epochs"),
    ({"script": "tests/scripts/argparse_train.py", "flags": {"learning_rate": "lr"}}, {},
     "expected a flag such as --lr, or null to not pass it"),
    ({"script": "tests/scripts/argparse_train.py", "stop_grace": 3}, {}, "`workload.stop_grace` is 3; expected one of the fields"),
    ({"script": "tests/scripts/argparse_train.py", "stop_grace_s": -1}, {}, "expected seconds from 0 to 600"),
    ({"script": "tests/scripts/argparse_train.py"}, {"resources": {"workers": 2}},
     "`resources.workers` is 2; expected 1 with a script workload. A script runs as one process per trial"),
    ({"script": "tests/scripts/argparse_train.py"}, {"lr_bounds": "auto"},
     "`lr_bounds` is 'auto'; expected 'declared' with a script workload."),
])
def test_a_bad_script_workload_is_refused_naming_the_field(workload, fields, message):
    with pytest.raises(SpecError) as refused:
        _spec(workload, **fields)
    assert message in str(refused.value)


def test_a_workload_string_that_is_not_a_name_mentions_the_script_form():
    with pytest.raises(SpecError, match=r"or a training script: \{script: train.py\}"):
        _spec("train.py")


def test_the_reporting_api_works_outside_a_study_and_imports_nothing_heavy(tmp_path):
    code = ("import sys; from orchestrator.integrations.script import report, config, in_study, checkpoint_dir; "
            "report(epoch=1, val_loss=0.5); report(val_loss=0.25); print(in_study(), config(), checkpoint_dir()); "
            "heavy = [m for m in ('torch', 'ray', 'mlflow', 'optuna', 'numpy') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["epoch 1: val_loss=0.5", "epoch 2: val_loss=0.25"]
    assert done.stdout.splitlines() == [f"False {{}} {tmp_path / 'checkpoint'}", "[]"]


def test_a_script_workload_is_its_own_workload_function():
    from orchestrator.workloads.registry import resolve_workload

    workload = _spec({"script": "tests/scripts/argparse_train.py"}).workload
    assert isinstance(workload, ScriptWorkload) and resolve_workload(workload) is workload
