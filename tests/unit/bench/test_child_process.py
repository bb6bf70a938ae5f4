"""The overhead benchmarks run each variant in a child process: its JSON comes back with its wall
and CPU seconds, and a failed child is named with its log's tail. ``run_child`` reaps every child
of the calling process, so each check runs in a Python process of its own."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

CALL = """
import json, sys
from pathlib import Path
from bench.overhead.digits_overhead import run_child
folder = Path(sys.argv[1])
try:
    out = run_child("json.tool", [sys.argv[2], str(folder / "out.json")], what="variant copy",
                    log_path=folder / "copy.log", child_out=folder / "out.json")
except RuntimeError as error:
    out = {"error": str(error)}
print(json.dumps(out))
"""


def _run_child(tmp_path, source) -> dict:
    done = subprocess.run([sys.executable, "-c", CALL, str(tmp_path), str(source)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_child_json_comes_back_with_its_costs(tmp_path):
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"rows": 3}))
    out = _run_child(tmp_path, source)
    assert out["rows"] == 3 and out["subprocess_wall_s"] > 0 and out["subprocess_cpu_s"] > 0
    assert out["left_running"] == [] and out["log"] == str(tmp_path / "copy.log")


def test_a_failed_child_is_named_with_its_log(tmp_path):
    error = _run_child(tmp_path, tmp_path / "missing.json")["error"]
    assert error.startswith(f"variant copy failed (exit 2); log {tmp_path / 'copy.log'}:\n"), error
    assert "No such file" in error
