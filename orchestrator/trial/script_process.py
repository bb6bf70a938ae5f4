"""One trial of a script workload: the script as a subprocess of the trial's Ray worker.

The script gets the configuration (flags, ``STEPSIZE_PARAM_*`` variables, a JSON file) and two
pipes: it writes each epoch's report to one and waits on the other until the trial's
``trial.report`` returned, i.e. until the scheduler let the trial go on. Each report goes through
the same :class:`~orchestrator.trial.context.TrialContext` as a function workload's, so the
divergence guard, checkpoints and PRUNED semantics are the same. When the trial ends for any
reason (stopped by the scheduler, diverged, Ctrl-C) the script's process group gets SIGTERM, then
SIGKILL after ``stop_grace_s``; on Linux the script also dies with the thread that started it.
Its output goes to the worker's log and to ``script-output.log`` in the trial's folder, and its
last lines are the error of a trial whose script exits non-zero.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from orchestrator.errors import ScriptFailed
from orchestrator.keys import ScriptEnv
from orchestrator.trial.checkpoints import META_FILE

if TYPE_CHECKING:
    from orchestrator.trial.context import TrialContext
    from orchestrator.workloads.script import ScriptWorkload

TAIL_LINES = 30
OUTPUT_LOG = "script-output.log"


def run_script(workload: "ScriptWorkload", config: dict[str, Any], trial: "TrialContext") -> None:
    """Run ``workload``'s script for one trial, turning its reports into ``trial.report`` calls.

    Raises :class:`ScriptFailed` when the script exits non-zero, is killed, writes a report that
    is not a JSON object of numbers, or exits 0 without reporting an epoch.
    """
    with tempfile.TemporaryDirectory(prefix=f"stepsize-trial-{trial.number}-") as work:
        checkpoint = Path(work) / "checkpoint"
        checkpoint.mkdir()
        resume = trial.resume_dir()  # also sets trial.epoch to the checkpoint's epoch
        trial_values = {"max_epochs": trial.max_epochs, "seed": trial.seed, "trial_number": trial.number,
                        "device": trial.device, "checkpoint_dir": str(checkpoint), "resume_dir": resume}
        config_file = Path(work) / "config.json"
        config_file.write_text(json.dumps({"config": config, "trial": {
            "number": trial.number, "max_epochs": trial.max_epochs, "seed": trial.seed, "device": trial.device,
            "cpus": trial.cpus, "options": dict(trial.options), "start_epoch": trial.epoch}}, default=str))
        report_r, report_w = os.pipe()
        ack_r, ack_w = os.pipe()
        env = {**os.environ, **workload.parameter_environment(config),
               **_environment(trial, config_file, checkpoint, resume),
               ScriptEnv.REPORT_FD: str(report_w), ScriptEnv.ACK_FD: str(ack_r)}
        argv = workload.argv(config, trial_values)
        log = open(_log_folder(work) / OUTPUT_LOG, "a", encoding="utf-8", errors="replace")
        try:
            process = subprocess.Popen(
                argv, cwd=workload.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=(report_w, ack_r), start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            for fd in (report_r, report_w, ack_r, ack_w):
                os.close(fd)
            log.close()
            raise ScriptFailed(f"{workload} could not be started: {exc}") from None
        os.close(report_w)
        os.close(ack_r)
        session = _Session(process, log)
        try:
            reported = session.relay(report_r, ack_w, trial, checkpoint)
        finally:
            session.stop(workload.stop_grace_s)
            os.close(ack_w)
            os.close(report_r)
            log.close()
    code = process.returncode
    if code != 0:
        raise ScriptFailed(_failure_text(workload, code, session, trial.epoch))
    if not reported:
        raise ScriptFailed(_failure_text(workload, 0, session, trial.epoch)
                           + " without reporting an epoch: call report(...) from orchestrator.integrations.script "
                           "once per epoch, or print a line `STEPSIZE_REPORT {\"epoch\": 1, \"val_loss\": 0.4}`")


def _environment(trial: "TrialContext", config_file: Path, checkpoint: Path, resume: str | None) -> dict[str, str]:
    env = {
        ScriptEnv.CONFIG_FILE: str(config_file), ScriptEnv.TRIAL_NUMBER: str(trial.number),
        ScriptEnv.MAX_EPOCHS: str(trial.max_epochs), ScriptEnv.SEED: str(trial.seed),
        ScriptEnv.DEVICE: trial.device, ScriptEnv.CHECKPOINT_DIR: str(checkpoint),
        ScriptEnv.START_EPOCH: str(trial.epoch), "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(max(1, int(trial.cpus))),
    }
    if resume:
        env[ScriptEnv.RESUME_DIR] = resume
    return env


class _Session:
    """The running script: its output readers, the queue of its reports, its end."""

    def __init__(self, process: subprocess.Popen, log: IO[str]) -> None:
        self.process = process
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.last_error_line = ""  # stderr's last non-empty line: an exception's, a sys.exit message
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read_output, args=(process.stdout, sys.stdout), daemon=True),
            threading.Thread(target=self._read_output, args=(process.stderr, sys.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def relay(self, report_r: int, ack_w: int, trial: "TrialContext", checkpoint: Path) -> bool:
        """Hand each report to ``trial.report`` until the script exits; True when it reported."""
        pipe = threading.Thread(target=self._read_reports, args=(report_r,), daemon=True)
        pipe.start()
        reported = False
        while True:
            try:
                kind, text = self.events.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and not pipe.is_alive() and not any(
                        r.is_alive() for r in self._readers) and self.events.empty():
                    return reported
                if self.process.poll() is not None:
                    pipe.join(0.5)
                    for reader in self._readers:
                        reader.join(0.5)
                continue
            metrics = _parse_report(text)
            epoch = metrics.pop("epoch", None)
            files = kind == "pipe" and any(p.name != META_FILE for p in checkpoint.iterdir())
            trial.report(epoch=None if epoch is None else int(epoch),
                         checkpoint_dir=str(checkpoint) if files else None, **metrics)
            reported = True
            if kind == "pipe":
                try:
                    os.write(ack_w, b"1")
                except BrokenPipeError:
                    pass  # the script exited meanwhile; its exit code tells

    def stop(self, grace_s: float) -> None:
        """End the script's process group: SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.process, signal.SIGKILL)  # what the script started, too
        self.process.wait()
        for reader in self._readers:
            reader.join(timeout=2.0)

    def _read_output(self, stream: IO[bytes], echo: IO[str]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            if line.startswith(ScriptEnv.REPORT_LINE):
                self.events.put(("line", line[len(ScriptEnv.REPORT_LINE):]))
            with self._lock:
                self.tail.append(line.rstrip("\n"))
                if echo is sys.stderr and line.strip():
                    self.last_error_line = line.strip()
                self.log.write(line)
                self.log.flush()
            echo.write(line)
        stream.close()

    def _read_reports(self, report_r: int) -> None:
        with os.fdopen(os.dup(report_r), "rb") as pipe:
            for raw in pipe:
                self.events.put(("pipe", raw.decode("utf-8", errors="replace")))


def _parse_report(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()):
        raise ScriptFailed(f"the script reported {text.strip()[:200]!r}; a report is a JSON object of numbers, "
                           "e.g. {\"epoch\": 1, \"val_loss\": 0.4}")
    return data


def _failure_text(workload: "ScriptWorkload", code: int, session: _Session, epoch: int) -> str:
    """The script's last lines, then one line saying how it ended (with stderr's last line, which
    is an exception's or a sys.exit message's; the two streams' lines interleave by arrival)."""
    lines = [line for line in session.tail if line.strip() and not line.startswith(ScriptEnv.REPORT_LINE)]
    shown = "\n".join("  | " + line for line in lines[-TAIL_LINES:])
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    cause = session.last_error_line or (lines[-1].strip() if lines else "")
    last = f": {cause}" if code != 0 and cause else ""
    head = f"the script's last lines ({OUTPUT_LOG} in the trial's folder has all):\n{shown}\n" if shown else ""
    return f"{head}{workload} {how} after epoch {epoch}{last}"


def _log_folder(work: str) -> Path:
    """The trial's folder inside Ray Tune (its working folder, kept with the trial's results),
    else the trial's temporary folder."""
    if "ray" in sys.modules:
        import warnings

        from ray import tune

        with warnings.catch_warnings():  # outside a Tune trial Ray warns, then answers None
            warnings.simplefilter("ignore")
            if tune.get_context().get_trial_name() is not None:
                return Path.cwd()
    return Path(work)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a function for ``preexec_fn`` that makes the kernel SIGKILL the script when the
    thread that started it ends (a worker killed outright leaves no script behind)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    set_pdeathsig = 1  # PR_SET_PDEATHSIG

    def arm() -> None:
        prctl(set_pdeathsig, signal.SIGKILL)

    return arm

