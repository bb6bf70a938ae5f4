"""The ``stepsize`` command's errors, without Ray: a bad study file, a bad override, a missing file
or study, each one paragraph with exit code 2, and nothing created; and the commands that answer at
once (status, best, --help, presets, ui --help, a spec error) import no torch, Ray, MLflow or SciPy."""

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


def _small_study(folder):
    """A real SQLite study of four trials (complete, pruned, failed), as a launch records them."""
    import optuna

    from orchestrator.keys import TrialAttr
    from orchestrator.spec import spec_from_mapping
    from orchestrator.study.storage import create_study

    spec = spec_from_mapping({"name": "quick", "storage": f"sqlite:///{folder}/optuna.db"})
    study = create_study(spec)
    for number, state in enumerate(["COMPLETE", "PRUNED", "FAIL", "COMPLETE"]):
        trial = study.ask()
        spec.search_space.suggest(trial)
        if state == "FAIL":
            trial.set_user_attr(TrialAttr.ERROR, "Traceback (most recent call last):\nValueError: bad")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        trial.set_user_attr(TrialAttr.FINAL_METRICS, {"epoch": 2, "val_loss": 1.0 / (number + 1)})
        study.tell(trial, 1.0 / (number + 1) if state == "COMPLETE" else None, state=optuna.trial.TrialState[state])
    return spec.storage


_QUICK_COMMANDS = """
import json, sys
from orchestrator.cli import main
heavy = ("torch", "ray", "mlflow", "scipy", "optuna")
seen = []
for args in json.loads(sys.argv[1]):
    try:
        code = main(args)
    except SystemExit as exc:  # --help
        code = exc.code
    seen.append([" ".join(args[:2]), code, [name for name in heavy if name in sys.modules]])
print("QUICK", json.dumps(seen))
"""


def test_the_commands_that_answer_at_once_import_no_torch_ray_mlflow_or_scipy(tmp_path):
    """``--help``, ``presets``, ``ui --help``, ``status``, ``best`` and a spec validation error,
    one after the other in one fresh interpreter; after each, none of torch, Ray, MLflow and SciPy
    is loaded (status and best load the study without building its TPE sampler, which imports
    SciPy), and the first three, which read no study, have not loaded Optuna either."""
    import json

    storage = _small_study(tmp_path)
    (tmp_path / "bad.yaml").write_text("name: bad\nbogus_field: 1\n")
    on = ["--storage", storage]
    commands = [["--help"], ["presets"], ["ui", "--help"], ["status", "quick", *on], ["status", "quick", *on, "--errors"],
                ["status", "quick", *on, "--json"], ["best", "quick", *on], ["best", "quick", *on, "--format", "json"],
                ["launch", str(tmp_path / "bad.yaml")]]
    done = subprocess.run([sys.executable, "-c", _QUICK_COMMANDS, json.dumps(commands)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1].removeprefix("QUICK "))
    assert [code for _, code, _ in report] == [0] * 8 + [2], (report, done.stderr)
    assert all(loaded == [] for _, _, loaded in report[:3]), report
    assert all(set(loaded) <= {"optuna"} for _, _, loaded in report[3:]), report
    assert "study quick: 4 trials (2 complete, 1 failed, 1 pruned); best val_loss 0.25 at trial 3" in done.stdout
    assert "invalid study spec: `bogus_field` is 1" in done.stderr
