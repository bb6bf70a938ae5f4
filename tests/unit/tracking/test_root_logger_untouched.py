"""Nothing stepsize imports changes the process's logging configuration: importing
``mlflow.pytorch`` calls ``logging.basicConfig(level=ERROR)``, which stepsize undoes."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = """
import logging
root = logging.getLogger()
root.setLevel(logging.INFO)
before = (root.level, list(root.handlers))
import orchestrator.cli, orchestrator.run.launch, orchestrator.run.searcher, orchestrator.tracking
import orchestrator.tracking.recorder as recorder, orchestrator.tracking.replay_later
from orchestrator.tracking.best_model import import_flavour
recorder._warm_up()
import_flavour()
import mlflow.pytorch
after = (root.level, list(root.handlers))
assert before == after, (before, after)
print("unchanged")
"""


def test_importing_what_stepsize_imports_leaves_the_root_logger_alone():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "unchanged" in done.stdout, done.stderr[-3000:]
