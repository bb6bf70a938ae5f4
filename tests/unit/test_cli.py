"""The ``stepsize`` command's errors, without Ray: a bad study file, a bad override, a missing file
or study, each one paragraph with exit code 2, and nothing created."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from orchestrator.cli import main
from tests.conftest import ROOT

STEPSIZE = [sys.executable, "-m", "orchestrator.cli"]


def _cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(STEPSIZE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "text, words",
    [
        ("name: x\nbudget: {trials: -3}\n", "`budget.trials` is -3"),
        ("name: x\nsampler: bogus\n", "`sampler` is 'bogus'"),
        ("name: x\nworkload: no_such_pkg.mod:train\n", "ModuleNotFoundError"),
        ("name: x\nbudget: {trials: 3\n", "valid YAML"),
        ("- just\n- a list\n", "mapping of fields"),
    ],
)
def test_cli_rejects_bad_spec_with_exit_2_and_creates_nothing(workdir, capsys, text, words):
    (workdir / "study.yaml").write_text(text)
    code, out, err = _run_cli(["launch", "study.yaml", "--results-dir", str(workdir / "ray")], capsys)
    assert code == 2
    assert words in err and err.startswith("stepsize: invalid study spec:")
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in workdir.iterdir()) == ["study.yaml"]  # no stepsize.db, no mlflow.db, no ray folder


def test_cli_rejects_bad_override(workdir, capsys):
    (workdir / "study.yaml").write_text("name: x\n")
    code, _, err = _run_cli(["launch", "study.yaml", "--trials", "0"], capsys)
    assert code == 2 and "`budget.trials` is 0" in err
    assert sorted(p.name for p in workdir.iterdir()) == ["study.yaml"]


def test_cli_missing_file_and_unknown_study(workdir, capsys):
    code, _, err = _run_cli(["launch", "missing.yaml"], capsys)
    assert code == 2 and "existing YAML study file" in err
    code, _, err = _run_cli(["status", "nothing-here"], capsys)
    assert code == 2 and "no study named 'nothing-here'" in err
    assert list(workdir.iterdir()) == []  # looking up a study creates no storage file


def test_cli_resume_errors_are_one_paragraph_with_exit_code_2(tmp_path):
    missing = _cli(["resume", "nothing-here", "--storage", f"sqlite:///{tmp_path}/none.db"], tmp_path)
    assert missing.returncode == 2 and "no study named 'nothing-here'" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "none.db").exists()


def test_presets_lists_one_line_each_and_shows_one_in_full(capsys):
    from search_spaces import available_presets

    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = available_presets()
    assert len(lines) == len(names) + 1 and "stepsize presets NAME" in lines[0]
    for name, line in zip(names, lines[1:]):
        assert line.split()[0] == name and "learning_rate" in line and len(line) < 220
    assert main(["presets", "lr_only"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == {"learning_rate": {"type": "float", "low": 0.0001, "high": 1.0, "log": True}}
    assert main(["presets", "nope"]) == 2
    assert "no preset named 'nope'; presets: default," in capsys.readouterr().err


def test_summary_names_interrupted_trials_and_lists_failures():
    from orchestrator.cli import _failures_text, _summary_text
    from orchestrator.study.summary import StudySummary, TrialFailure

    failures = [TrialFailure(n, f"ValueError: bad {n}", f"Traceback\nValueError: bad {n}") for n in range(12)]
    summary = StudySummary("s", "val_loss", "min", {"COMPLETE": 3, "FAIL": 12, "RUNNING": 2}, failures=failures)
    assert _summary_text(summary) == "study s: 17 trials (3 complete, 12 failed, 2 interrupted, resumable)"
    summary.driver_active = True
    assert _summary_text(summary) == "study s: 17 trials (3 complete, 12 failed, 2 running)"
    short = _failures_text(summary, whole=False).splitlines()
    assert short[0] == "failed trials (12; whole texts: stepsize status s --errors):"
    assert short[1] == "  trial 0: ValueError: bad 0" and short[-1] == "  ... and 2 more" and len(short) == 12
    assert _failures_text(summary, whole=True).startswith("trial 0:\nTraceback\nValueError: bad 0\n\ntrial 1:")
