"""``stepsize ui`` as a user runs it: it prints the study's URL within seconds, and Ctrl-C stops it
cleanly (exit code 130, no traceback, the server gone and its port free)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna

from orchestrator.keys import StudyAttr
from orchestrator.spec import spec_from_mapping
from orchestrator.tracking.setup import recorder_for
from tests.conftest import ROOT
from tests.tracking_support import fake_trial, free_port, result

START_LIMIT_S = 45.0  # about 6 s on a quiet 2-core machine; generous for a loaded one


def _recorded_study(tmp_path) -> str:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    spec = spec_from_mapping({"name": "shown", "search_space": "lr_only", "storage": storage,
                              "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "results_dir": str(tmp_path / "ray")})
    study = optuna.create_study(study_name="shown", storage=storage)
    study.set_user_attr(StudyAttr.SPEC, spec.to_dict())
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster={"nodes": 1, "cpus": 2, "gpus": 0})
    trial = study.ask()
    lr = trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
    tune_trial = fake_trial(trial.number, lr)
    recorder.callback.on_trial_start(iteration=0, trials=[], trial=tune_trial)
    recorder.callback.on_trial_result(iteration=1, trials=[], trial=tune_trial, result=result(1))
    trial.report(1.2, 1)
    study.tell(trial, 1.2)
    recorder.callback.on_trial_complete(iteration=0, trials=[], trial=tune_trial)
    assert recorder.finish(study, spec)
    return storage


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _processes_with(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if text.encode() in cmdline.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_ui_comes_up_in_seconds_and_ctrl_c_stops_it_cleanly(tmp_path):
    storage = _recorded_study(tmp_path)
    port = free_port()
    began = time.monotonic()
    # Its own process group, as a terminal's foreground job: Ctrl-C goes to the whole group.
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", "shown", "--storage", storage,
                                "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if "MLflow UI for study shown: http://127.0.0.1:" in line:
                break
        up_s = time.monotonic() - began
        assert seen and "MLflow UI for study shown" in seen[-1], "".join(seen)
        assert up_s < START_LIMIT_S, f"stepsize ui took {up_s:.1f} s"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert answer.status == 200

        began = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        rest = process.communicate(timeout=30)[0]
        stop_s = time.monotonic() - began
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = "".join(seen) + rest
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert stop_s < 15.0, f"stopping took {stop_s:.1f} s"
    assert not _listening(port) and not _processes_with(f"--port\0{port}\0")
    print(f"stepsize ui: URL after {up_s:.1f} s, stopped in {stop_s:.1f} s")
