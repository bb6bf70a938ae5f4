"""Completing a study's MLflow record after its driver has exited: a detached background process
that waits for the tracking server and writes what the record log holds (and, for a study that
finished, the best model), then exits.

The driver starts it with :func:`orchestrator.tracking.handover.spawn` when the tracking store is still away at the study's end.
It waits for the driver to exit, then every few seconds, for up to ``--patience-s`` (a day): loads
the study, stops if a driver runs it again (that driver writes the record), else replays when the
server's ``/health`` answers. URLs travel in the environment, never on the command line (they may
hold a password). Run by hand: ``STEPSIZE_REPLAY_STORAGE=URL python -m
orchestrator.tracking.replay_later NAME``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Sequence

from orchestrator.errors import StudyNotFoundError
from orchestrator.keys import Env
from orchestrator.tracking.handover import EVERY_S, PATIENCE_S


def complete_record(study_name: str, storage: str, tracking_uri: str | None, best_model: bool) -> str | None:
    """One try: what happened ("written", "driver") or None when the record is not complete yet."""
    from orchestrator.study.driver_lock import active_driver
    from orchestrator.study.storage import load_study
    from orchestrator.study.summary import summarize
    from orchestrator.tracking.setup import recorder_for

    study, spec = load_study(study_name, storage)
    spec = dataclasses.replace(spec, storage=storage, tracking_uri=tracking_uri or spec.tracking_uri)
    if active_driver(study) is not None:
        return "driver"
    recorder = recorder_for(study, spec)
    if not recorder.writer.reachable() or not recorder.replay(study):
        recorder.log.close()
        return None
    written = recorder.record_best_model(spec, summarize(study, spec).best_number) if best_model else True
    recorder.log.close()
    return "written" if written else None


def _alive(pid: int) -> bool:
    from orchestrator.study.driver_lock import _alive as alive

    return alive(pid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.tracking.replay_later")
    parser.add_argument("study")
    parser.add_argument("--after-pid", type=int, default=None)
    parser.add_argument("--best-model", action="store_true")
    parser.add_argument("--patience-s", type=float, default=PATIENCE_S)
    parser.add_argument("--every-s", type=float, default=EVERY_S)
    args = parser.parse_args(argv)
    storage = os.environ.get(Env.REPLAY_STORAGE)
    if not storage:
        print(f"{Env.REPLAY_STORAGE} is not set", flush=True)
        return 2
    began = time.monotonic()
    while args.after_pid and _alive(args.after_pid) and time.monotonic() - began < args.patience_s:
        time.sleep(0.2)
    ended = time.monotonic()
    print(f"{time.strftime('%H:%M:%S')} completing the MLflow record of study {args.study!r}", flush=True)
    while time.monotonic() - began < args.patience_s:
        try:
            outcome = complete_record(args.study, storage, os.environ.get(Env.REPLAY_TRACKING), args.best_model)
        except StudyNotFoundError:
            print(f"{time.strftime('%H:%M:%S')} study {args.study!r} is gone from its storage; nothing to write",
                  flush=True)
            return 1
        except Exception as exc:  # noqa: BLE001 - the storage may be away too: try again
            outcome = None
            print(f"{time.strftime('%H:%M:%S')} not yet: {type(exc).__name__}: {exc}", flush=True)
        if outcome == "driver":
            print(f"{time.strftime('%H:%M:%S')} a driver runs the study again; it writes the record", flush=True)
            return 0
        if outcome == "written":
            print(f"{time.strftime('%H:%M:%S')} the MLflow record is complete "
                  f"({time.monotonic() - ended:.1f} s after the driver ended)", flush=True)
            return 0
        time.sleep(args.every_s)
    print(f"gave up after {args.patience_s:.0f} s; `stepsize ui {args.study}` writes the record", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
