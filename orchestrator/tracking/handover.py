"""Handing a study's unwritten MLflow record over to a detached background process
(:mod:`orchestrator.tracking.replay_later`) when the tracking store is still away at the study's end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrator.keys import Env

PATIENCE_S = 24 * 3600.0  # how long the background process keeps trying
EVERY_S = 5.0  # seconds between its tries


def spawn(study_name: str, storage: str, tracking_uri: str, log_path: Path,
          best_model: bool = True) -> tuple[int, Path] | None:
    """Start the background process for ``study_name``; its pid and log file, or None."""
    patience = patience_s()
    if patience <= 0:
        return None
    output = log_path.with_name(log_path.name.replace(".jsonl", "") + ".replay.txt")
    env = {**os.environ, Env.REPLAY_STORAGE: storage, Env.REPLAY_TRACKING: tracking_uri}
    command = [sys.executable, "-m", "orchestrator.tracking.replay_later", study_name,
               "--after-pid", str(os.getpid()), "--patience-s", f"{patience:g}",
               *(["--best-model"] if best_model else [])]
    try:
        with output.open("a", encoding="utf-8") as sink:
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                       start_new_session=True, close_fds=True, cwd=os.getcwd())
    except OSError:
        return None
    return process.pid, output


def patience_s() -> float:
    """How long the background process keeps trying: ``STEPSIZE_REPLAY_PATIENCE`` seconds (0 or
    ``off``: no background process), by default a day."""
    given = os.environ.get(Env.REPLAY_PATIENCE, "").strip().lower()
    if given in ("off", "no", "false"):
        return 0.0
    try:
        return float(given) if given else PATIENCE_S
    except ValueError:
        return PATIENCE_S
