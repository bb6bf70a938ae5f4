"""``stepsize ui NAME``: the MLflow UI on a study's tracking store, bound to this machine.

The UI has no authentication, so it listens on a loopback address only; reach it from elsewhere
through an SSH tunnel (``ssh -L 5000:127.0.0.1:5000 user@host``), never by exposing it.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TextIO

from orchestrator.credentials import connectable, redact, without_userinfo
from orchestrator.errors import NoRecordError, UIStartError, UsageError
from orchestrator.keys import StudyAttr, Tag
from orchestrator.tracking import naming

START_TIMEOUT_S = 120.0  # mlflow ui takes 5-10 s to start on a small machine; more under load
STOP_TIMEOUT_S = 5.0  # then it is killed


@dataclass(frozen=True)
class StudyRecord:
    """Where a study's record is: tracking URI, experiment and parent run."""

    study: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def fragment(self) -> str:
        return f"#/experiments/{self.experiment_id}/runs/{self.parent_run_id}"

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/{self.fragment()}"

    def table_url(self, base: str) -> str:
        """The experiment's runs table, opened on the view :func:`save_table_view` stored."""
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


# The MLflow UI's shared views: a view stored in the experiment tag ``mlflow.sharedViewState.KEY``
# opens with ``?viewStateShareKey=KEY`` (the UI's "Share" button stores them the same way). A view
# of the runs table with the objective and the trial's state as columns.
VIEW_KEY = "stepsize-trials"
_VIEW_TAG = "mlflow.sharedViewState."


def table_view(record: StudyRecord, metric: str) -> dict:
    """The runs-table view: the objective, the trial's state and stop reason, the duration.
    (MLflow 3.17 does not restore expanded rows from a shared view: the study's row is expanded by
    a click on it.)"""
    return {
        "selectedColumns": [f"metrics.`{metric}`", f"tags.`{Tag.STATE}`", f"tags.`{Tag.STATUS}`",
                            "attributes.`Duration`"],
    }


def save_table_view(record: StudyRecord, metric: str) -> bool:
    """Store :func:`table_view` in the study's experiment (True when it was stored)."""
    import json

    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=connectable(record.tracking_uri, "tracking_uri"))
        client.set_experiment_tag(record.experiment_id, _VIEW_TAG + VIEW_KEY, json.dumps(table_view(record, metric)))
        return True
    except Exception:  # noqa: BLE001 - the plain URLs still work
        return False


def find_record(name: str, storage: str, out: TextIO | None = None) -> StudyRecord:
    """The study's record, after writing whatever its record log still holds.
    :class:`~orchestrator.errors.NoRecordError` when the study has none yet."""
    from orchestrator.study.storage import load_study

    study, spec = load_study(name, storage)
    return study_record(study, spec, out)


def study_record(study: object, spec: object, out: TextIO | None = None) -> StudyRecord:
    """:func:`find_record` for a loaded study."""
    from mlflow import MlflowClient

    from orchestrator.tracking.setup import replay_record_log, tracking_uri_of

    name = study.study_name  # type: ignore[attr-defined]
    replayed = replay_record_log(study, spec)
    if replayed is not None and out is not None:
        state = "written" if replayed else "still waiting (tracking store unreachable)"
        print(f"records kept during a tracking outage: {state}", file=out)
    attrs = study.user_attrs  # type: ignore[attr-defined]
    uri = tracking_uri_of(study, spec)
    parent = attrs.get(StudyAttr.MLFLOW_PARENT_RUN)
    if not parent:
        raise NoRecordError(f"study {name!r} has no MLflow record in {redact(uri)} yet")
    run = MlflowClient(tracking_uri=connectable(uri, "tracking_uri")).get_run(parent)
    return StudyRecord(name, uri, run.info.experiment_id, parent)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_healthy(base: str, process: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def ui_command(host: str, port: int) -> list[str]:
    """``mlflow ui`` on ``host:port``; the store it serves comes from the environment
    (:func:`ui_environment`), so no credential shows on a command line."""
    return [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", "1",
            "--uvicorn-opts", "--no-access-log"]


def ui_environment(tracking_uri: str) -> dict[str, str]:
    """The environment of ``mlflow ui`` for the store at ``tracking_uri`` (its ``${NAME}``
    references filled in), without MLflow's job runner (GenAI jobs; its worker processes doubled
    the UI's start time on a small machine)."""
    return {**os.environ, "MLFLOW_BACKEND_STORE_URI": connectable(tracking_uri, "tracking_uri"),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}


def stop(process: subprocess.Popen) -> None:
    """End ``mlflow ui`` and its server processes (its own process group), killed after
    :data:`STOP_TIMEOUT_S`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return ""


def serve(name: str, storage: str, host: str = "127.0.0.1", port: int = 5000, out: TextIO = sys.stdout) -> int:
    """Start ``mlflow ui`` on the study's tracking store, print the parent run's URL, and wait
    until interrupted (Ctrl-C: 130). The server starts as soon as the study is loaded, while its
    record log is written. A study recorded on a remote tracking server: print its URL there."""
    from orchestrator.study.storage import load_study
    from orchestrator.tracking.setup import tracking_uri_of

    if not is_loopback(host):
        raise UsageError(
            f"--host {host} would expose the MLflow UI, which has no authentication, beyond this machine; "
            f"use 127.0.0.1 and an SSH tunnel from yours: ssh -L {port}:127.0.0.1:{port} USER@THIS_HOST"
        )
    study, spec = load_study(name, storage)
    uri = tracking_uri_of(study, spec)
    if naming.is_http(uri):
        record = study_record(study, spec, out)
        print(f"study {name} is recorded on the tracking server {redact(record.tracking_uri)}:", file=out)
        print(record.url(without_userinfo(record.tracking_uri)), file=out)
        if save_table_view(record, spec.objective.metric):
            print(f"its trials, with {spec.objective.metric} and their state: "
                  f"{record.table_url(without_userinfo(record.tracking_uri))}", file=out)
        return 0
    if not _port_free(host, port):
        raise UsageError(f"port {port} on {host} is in use; pass another with --port")
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    log_file = tempfile.NamedTemporaryFile("w", prefix="stepsize-mlflow-ui-", suffix=".log", delete=False)
    # Its own process group: Ctrl-C reaches this command only, which ends the server quietly.
    process = subprocess.Popen(ui_command(host, port), env=ui_environment(uri), stdout=log_file,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log_file.close()
    if threading.current_thread() is threading.main_thread():
        # `kill` ends the UI too, not only this command.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    started = False
    try:
        record = study_record(study, spec, out)
        if not _wait_healthy(base, process, START_TIMEOUT_S):
            stop(process)
            raise UIStartError(f"mlflow ui did not start on {base} (exit code {process.poll()}); its log "
                               f"{log_file.name} ends:\n{_tail(log_file.name)}")
        started = True
        print(f"MLflow UI for study {name}: {record.url(base)}", file=out, flush=True)
        if save_table_view(record, spec.objective.metric):
            print(f"its trials, with {spec.objective.metric} and their state: {record.table_url(base)}",
                  file=out, flush=True)
        print(f"(listening on {host} only; from another machine: ssh -L {port}:{host}:{port} USER@THIS_HOST, "
              "then open the same URL there. Ctrl-C stops it.)", file=out, flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop(process)
        if started and process.returncode in (0, -signal.SIGTERM, 130):
            os.unlink(log_file.name)  # kept when the server did not start: the error names it
