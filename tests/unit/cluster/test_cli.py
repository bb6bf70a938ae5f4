"""``stepsize cluster`` without a cluster: the error names the port and how to start one."""

from __future__ import annotations


def test_cluster_command_names_the_missing_cluster(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    stepsize = str(Path(sys.executable).with_name("stepsize"))
    done = subprocess.run([stepsize, "cluster", "status", "--port", "39999"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no local cluster on port 39999" in done.stderr and "stepsize cluster up --port 39999" in done.stderr
