"""The overhead benchmarks run each variant in a child process: its JSON comes back with its wall
and CPU seconds, and a failed child is named with its log's tail."""

from __future__ import annotations

import json

import pytest

from bench.overhead.digits_overhead import run_child


def test_the_child_json_comes_back_with_its_costs(tmp_path):
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"rows": 3}))
    out = run_child("json.tool", [str(source), str(tmp_path / "out.json")], what="variant copy",
                    log_path=tmp_path / "copy.log", child_out=tmp_path / "out.json")
    assert out["rows"] == 3 and out["subprocess_wall_s"] > 0 and out["subprocess_cpu_s"] > 0
    assert out["left_running"] == [] and out["log"] == str(tmp_path / "copy.log")


def test_a_failed_child_is_named_with_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"variant broken failed \(exit 2\); log .*broken.log:\n(.|\n)*No such file"):
        run_child("json.tool", [str(tmp_path / "missing.json"), str(tmp_path / "out.json")], what="variant broken",
                  log_path=tmp_path / "broken.log", child_out=tmp_path / "out.json")
