"""The ``stepsize`` command: launch, status, best, presets."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, Sequence

import yaml

from orchestrator.spec import DEFAULT_STORAGE

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepsize",
        description="Tune learning rate, batch size, momentum, optimizer and schedule with Optuna on Ray Tune.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    launch = sub.add_parser("launch", help="validate a study file and run the study")
    launch.add_argument("study", help="path of the study YAML file")
    launch.add_argument("--trials", type=int, help="number of trials (overrides budget.trials)")
    launch.add_argument("--max-epochs", type=int, dest="max_epochs", help="epochs per trial at most")
    launch.add_argument("--seed", type=int, help="sampler and training seed")
    launch.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///stepsize.db")
    launch.add_argument("--address", help="Ray address: auto, HOST:PORT or ray://HOST:PORT")
    launch.add_argument("--concurrency", type=int, help="concurrent trials at most (default: as the CPUs allow)")
    launch.add_argument("--results-dir", dest="results_dir", help="folder for Ray's trial state")
    launch.add_argument("--quiet", action="store_true", help="no live progress view (for scripts)")
    launch.add_argument("--verbose", action="store_true", help="keep Ray's own logs")

    status = sub.add_parser("status", help="trials by state and the best so far")
    status.add_argument("name", help="study name")
    status.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default %(default)s)")
    status.add_argument("--json", action="store_true", help="print JSON")

    best = sub.add_parser("best", help="print the best configuration")
    best.add_argument("name", help="study name")
    best.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default %(default)s)")
    best.add_argument("--format", choices=("yaml", "json"), default="yaml", help="output format")

    sub.add_parser("presets", help="list the search-space presets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stepsize`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: workloads next to the study import
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("stepsize: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error reaches the user as one paragraph
        return _report_error(exc)


def _report_error(exc: Exception) -> int:
    from orchestrator.errors import StudyNotFoundError
    from orchestrator.study import StudyExistsError
    from search_spaces import SpaceError

    if isinstance(exc, SpaceError):
        print(f"stepsize: invalid study spec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, (StudyNotFoundError, StudyExistsError, LookupError)):
        print(f"stepsize: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    if os.environ.get("STEPSIZE_DEBUG"):
        traceback.print_exc()
    print(f"stepsize: error: {type(exc).__name__}: {exc} (set STEPSIZE_DEBUG=1 for the traceback)", file=sys.stderr)
    return 1


def _launch(args: argparse.Namespace) -> int:
    from orchestrator.api import launch

    summary = launch(
        args.study,
        quiet=args.quiet,
        verbose=args.verbose,
        trials=args.trials,
        max_epochs=args.max_epochs,
        seed=args.seed,
        storage=args.storage,
        address=args.address,
        concurrency=args.concurrency,
        results_dir=args.results_dir,
    )
    print(_summary_text(summary))
    if summary.best_number is not None:
        print("best configuration:")
        print(yaml.safe_dump(summary.best_config, sort_keys=False).rstrip())
    return 0


def _summary_text(summary: Any) -> str:
    states = ", ".join(f"{count} {state.lower()}" for state, count in sorted(summary.counts.items()))
    if summary.diverged:
        states += f"; {summary.diverged} of them diverged"
    text = f"study {summary.name}: {summary.total} trials ({states or 'none'})"
    if summary.best_number is not None:
        text += f"; best {summary.metric} {summary.best_value:.6g} at trial {summary.best_number}"
        extra = {k: v for k, v in summary.best_metrics.items() if k != summary.metric and k != "epoch"}
        if extra:
            text += " (" + ", ".join(f"{k} {v:.4g}" for k, v in sorted(extra.items())) + ")"
    return text


def _status(args: argparse.Namespace) -> int:
    from orchestrator.api import status

    summary = status(args.name, args.storage)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(_summary_text(summary))
    return 0


def _best(args: argparse.Namespace) -> int:
    from orchestrator.api import best

    result = best(args.name, args.storage)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(yaml.safe_dump(result, sort_keys=False).rstrip())
    return 0


def _presets(args: argparse.Namespace) -> int:
    from search_spaces import available_presets, preset_mapping

    for name in available_presets():
        print(f"{name}:")
        print("  " + yaml.safe_dump(preset_mapping(name), sort_keys=False).rstrip().replace("\n", "\n  "))
    return 0


_COMMANDS = {"launch": _launch, "status": _status, "best": _best, "presets": _presets}

if __name__ == "__main__":
    sys.exit(main())
