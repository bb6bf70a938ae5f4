"""How soon the per-trial watchdog stops a trial after it crosses ``limits:``.

Three cases, each repeated, with the watchdog a Ray worker runs (``orchestrator.trial.limits``) at
its default sampling (2 samples/s, 2 s grace), in this process, without Ray:

- time, Python code: a busy loop with a 1 s limit; reported: seconds from the limit to the
  ``TrialLimitExceeded`` in the loop's thread;
- time, stuck in C: a thread in ``time.sleep``; reported: seconds from the limit to the watchdog's
  own report (``on_stuck``);
- memory: a hog allocating 50 MiB every 0.1 s with a limit 300 MiB above its start; reported: how
  far above the limit the resident memory was when the hog was stopped.

    .venv/bin/python -m bench.limits.measure [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from bench.common import describe, machine_info, results_file, write_json
from orchestrator.errors import TrialLimitExceeded
from orchestrator.trial.limits import TrialLimits, Watchdog, process_memory

MIB = 2**20


def python_loop(limit_s: float = 1.0) -> float:
    watchdog = Watchdog(0, TrialLimits(time_s=limit_s)).start()
    began = time.monotonic()
    try:
        while time.monotonic() - began < 60:
            sum(range(100))
    except TrialLimitExceeded:
        stopped = time.monotonic() - began
    else:
        raise AssertionError("not stopped")
    finally:
        watchdog.finish()
    return stopped - limit_s


def stuck_in_c(limit_s: float = 1.0) -> float:
    seen: list[float] = []
    began = time.monotonic()

    def stuck() -> None:
        watchdog = Watchdog(0, TrialLimits(time_s=limit_s), on_stuck=lambda _: seen.append(time.monotonic())).start()
        try:
            time.sleep(limit_s + 6.0)
        except TrialLimitExceeded:
            pass
        watchdog.finish()

    thread = threading.Thread(target=stuck)
    thread.start()
    thread.join()
    assert len(seen) == 1, seen
    return seen[0] - began - limit_s


def memory_hog(headroom: int = 300 * MIB, step: int = 50 * MIB, every_s: float = 0.1) -> float:
    limit = process_memory() + headroom
    watchdog = Watchdog(0, TrialLimits(memory_bytes=limit)).start()
    hoard = []
    try:
        for _ in range(200):
            hoard.append(bytearray(step))
            time.sleep(every_s)
        raise AssertionError("not stopped")
    except TrialLimitExceeded:
        over = process_memory() - limit
    finally:
        watchdog.finish()
        hoard.clear()
    return over / MIB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    cases = {"python_loop_s_after_limit": python_loop, "stuck_in_c_s_after_limit": stuck_in_c,
             "memory_mib_over_limit": memory_hog}
    rows: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(args.repeats):
        for name, case in cases.items():
            rows[name].append(case())
            print(name, repeat, round(rows[name][-1], 3), file=sys.stderr, flush=True)
    summary = {name: describe(values) for name, values in rows.items()}
    out = write_json(results_file(__file__, "limits.json"),
                     {"machine": machine_info(), "repeats": args.repeats, "summary": summary, "rows": rows})
    for name, stats in summary.items():
        print(name, stats)
    print("written to", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
