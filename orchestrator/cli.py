"""The ``stepsize`` command: launch, resume, status, best, presets, lr-find, ui."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import traceback
from typing import Any, Sequence

from orchestrator.keys import Env
from orchestrator.spec.model import DEFAULT_STORAGE

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
    launch.add_argument("--epoch-budget", type=int, dest="epochs",
                        help="epochs trained over all trials at most (overrides budget.epochs)")
    launch.add_argument("--seed", type=int, help="sampler and training seed")
    launch.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///stepsize.db")
    launch.add_argument("--address", help="Ray cluster to join: auto or the head's HOST:PORT (default: start Ray here)")
    launch.add_argument("--concurrency", type=int, help="concurrent trials at most (default: as the CPUs allow)")
    launch.add_argument("--results-dir", dest="results_dir", help="folder for Ray's trial state")
    launch.add_argument("--quiet", action="store_true", help="no live progress view (for scripts)")
    launch.add_argument("--verbose", action="store_true", help="keep Ray's own logs")
    launch.add_argument("--new", action="store_true",
                        help="if the study name is taken, start a fresh study named NAME-2 (the first free suffix)")

    resume = sub.add_parser("resume", help="continue a study that was interrupted, or extend a finished one")
    resume.add_argument("name", help="study name")
    resume.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default %(default)s)")
    resume.add_argument("--trials", type=int, help="raise the study's budget to this many trials in all")
    resume.add_argument("--epoch-budget", type=int, dest="epochs",
                        help="raise the study's epoch budget (budget.epochs) to this many epochs in all")
    resume.add_argument("--address", help="Ray cluster to join: auto or the head's HOST:PORT (default: start Ray here)")
    resume.add_argument("--quiet", action="store_true", help="no live progress view (for scripts)")
    resume.add_argument("--verbose", action="store_true", help="keep Ray's own logs")

    status = sub.add_parser("status", help="trials by state and the best so far")
    status.add_argument("name", help="study name")
    status.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default %(default)s)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--errors", action="store_true", help="print each failed trial's whole error text")

    best = sub.add_parser("best", help="print the best configuration")
    best.add_argument("name", help="study name")
    best.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default %(default)s)")
    best.add_argument("--format", choices=("yaml", "json"), default="yaml", help="output format")

    presets = sub.add_parser("presets", help="list the search-space presets, or show one")
    presets.add_argument("name", nargs="?", help="a preset to show in full (as YAML to paste into a study file)")

    find = sub.add_parser("lr-find", help="run the LR range test on a study's workload and suggest an LR")
    find.add_argument("study", help="path of the study YAML file")
    find.add_argument("--batch-size", type=int, dest="batch_size", help="batch size (default: the study's)")
    find.add_argument("--min-lr", type=float, dest="min_lr", help="ramp start (default: the space's low LR)")
    find.add_argument("--max-lr", type=float, dest="max_lr", help="ramp end (default: 10x the space's high LR)")
    find.add_argument("--num-steps", type=int, dest="num_steps",
                      help="batches to ramp over, at least 3 (default: 100, or one epoch if longer; at most 3 epochs)")
    find.add_argument("--mode", choices=("exponential", "linear"), default="exponential", help="ramp shape")
    find.add_argument("--seed", type=int, help="seed (default: the study's)")
    find.add_argument("--plot", default="lr_range.png", help="where to save the loss-vs-LR plot (default %(default)s)")
    find.add_argument("--json", action="store_true", help="print the whole result as JSON")

    ui = sub.add_parser("ui", help="open the study's MLflow record in the MLflow UI (on 127.0.0.1)")
    ui.add_argument("name", help="study name")
    ui.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default %(default)s)")
    ui.add_argument("--port", type=int, default=5000, help="port for the UI (default %(default)s)")
    ui.add_argument("--host", default="127.0.0.1",
                    help="loopback address to listen on (default %(default)s); reach it remotely through an SSH tunnel")

    from cluster.local.cli import add_cluster_parser

    add_cluster_parser(sub)
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
    """One paragraph on standard error (a password in a URL shown as ``***``); the exit code: the
    error's own (:mod:`orchestrator.errors`), 2 for other lookups of a name, else 1."""
    from orchestrator.credentials import redact_text
    from orchestrator.errors import SpecError, StepsizeError

    summary = getattr(exc, "summary", None)
    if summary is not None:
        print(_summary_text(summary))
    if isinstance(exc, SpecError):
        message, code = f"invalid study spec: {exc}", exc.exit_code
    elif isinstance(exc, StepsizeError):
        message, code = str(exc.args[0] if exc.args else exc), exc.exit_code
    elif isinstance(exc, LookupError):
        message, code = str(exc.args[0] if exc.args else exc), EXIT_USAGE
    else:
        if os.environ.get(Env.DEBUG):
            traceback.print_exc()
        message, code = f"error: {type(exc).__name__}: {exc} (set STEPSIZE_DEBUG=1 for the traceback)", 1
    print(f"stepsize: {redact_text(message)}", file=sys.stderr)
    return code


def _launch(args: argparse.Namespace) -> int:
    from orchestrator.api import launch

    summary = launch(
        args.study,
        quiet=args.quiet,
        verbose=args.verbose,
        trials=args.trials,
        max_epochs=args.max_epochs,
        epochs=args.epochs,
        seed=args.seed,
        storage=args.storage,
        address=args.address,
        concurrency=args.concurrency,
        results_dir=args.results_dir,
        new=args.new,
    )
    return _print_summary(summary)


def _resume(args: argparse.Namespace) -> int:
    from orchestrator.api import resume

    summary = resume(args.name, storage=args.storage, trials=args.trials, address=args.address,
                     quiet=args.quiet, verbose=args.verbose, epochs=args.epochs)
    return _print_summary(summary)


def _print_summary(summary: Any) -> int:
    import yaml

    print(_summary_text(summary))
    if summary.failures:
        print(_failures_text(summary, whole=False), file=sys.stderr)
    if summary.best_number is not None:
        print("best configuration:")
        print(yaml.safe_dump(summary.best_config, sort_keys=False).rstrip())
    return 0


_SHOWN_FAILURES = 10


def _summary_text(summary: Any) -> str:
    from orchestrator.study.summary import STATE_WORDS

    counts = dict(summary.counts)
    interrupted = summary.interrupted
    if interrupted:
        counts.pop("RUNNING", None)
    states = [f"{count} {STATE_WORDS.get(state, state.lower())}" for state, count in sorted(counts.items())]
    if interrupted:
        states.append(f"{interrupted} interrupted, resumable")
    text = f"study {summary.name}: {summary.total} trials ({', '.join(states) or 'none'}"
    notes = [f"{summary.diverged} of them diverged"] if summary.diverged else []
    notes += [f"{summary.over_limit} over their limits"] if getattr(summary, "over_limit", 0) else []
    rung_model = getattr(summary, "rung_model_trials", 0)
    notes += [f"{rung_model} proposed by the rung model"] if rung_model else []
    text += f"; {', '.join(notes)})" if notes else ")"
    if getattr(summary, "epoch_budget", None) is not None:
        text += f"; epochs {summary.epochs_spent}/{summary.epoch_budget}"
    if summary.best_number is not None:
        text += f"; best {summary.metric} {summary.best_value:.6g} at trial {summary.best_number}"
        extra = {k: v for k, v in summary.best_metrics.items() if k != summary.metric and k != "epoch"}
        if extra:
            text += " (" + ", ".join(f"{k} {v:.4g}" for k, v in sorted(extra.items())) + ")"
    return text


def _failures_text(summary: Any, whole: bool) -> str:
    """The failed trials, a line each (their whole error texts with ``whole``)."""
    if not summary.failures:
        return "no trial failed"
    if whole:
        return "\n\n".join(f"trial {f.number}:\n{f.text.rstrip()}" for f in summary.failures)
    lines = [f"failed trials ({len(summary.failures)}; whole texts: stepsize status {summary.name} --errors):"]
    lines += [f"  trial {f.number}: {f.error[:300]}" for f in summary.failures[:_SHOWN_FAILURES]]
    if len(summary.failures) > _SHOWN_FAILURES:
        lines.append(f"  ... and {len(summary.failures) - _SHOWN_FAILURES} more")
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    from orchestrator.api import status

    summary = status(args.name, args.storage)
    if args.json:
        data = summary.to_dict()
        if args.errors:
            data["failures"] = [{"trial": f.number, "error": f.error, "text": f.text} for f in summary.failures]
        print(json.dumps(data, indent=2))
    elif args.errors:
        print(_failures_text(summary, whole=True))
    else:
        print(_summary_text(summary))
        if summary.failures:
            print(_failures_text(summary, whole=False))
        retried = getattr(summary, "attempts", {})
        if retried:  # trials Ray ran again after their worker died
            print(f"retried after their worker died ({len(retried)}): "
                  + ", ".join(f"trial {number}: {runs} attempts" for number, runs in sorted(retried.items())))
    return 0


def _best(args: argparse.Namespace) -> int:
    import yaml

    from orchestrator.api import best

    result = best(args.name, args.storage)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(yaml.safe_dump(result, sort_keys=False).rstrip())
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from orchestrator.lr_range.bounds import check_lr_find_options, find_lr, lr_find_report
    from orchestrator.lr_range.plot import plot_lr_range
    from orchestrator.spec import load_spec

    def progress(line: str) -> None:
        print(f"stepsize: lr-find: {line} ...", file=sys.stderr, flush=True)

    try:
        check_lr_find_options(min_lr=args.min_lr, max_lr=args.max_lr, num_steps=args.num_steps, batch_size=args.batch_size)
    except ValueError as exc:
        print(f"stepsize: lr-find: {exc}", file=sys.stderr)
        return EXIT_USAGE
    spec = load_spec(args.study, seed=args.seed)
    try:
        result = find_lr(spec, batch_size=args.batch_size, min_lr=args.min_lr, max_lr=args.max_lr,
                         num_steps=args.num_steps, mode=args.mode, progress=progress)
    except (ValueError, LookupError) as exc:
        print(f"stepsize: lr-find: {exc}", file=sys.stderr)
        return EXIT_USAGE
    plot = plot_lr_range(result, args.plot, title=f"LR range test: {spec.name}")
    if args.json:
        print(json.dumps({**result.to_dict(), "plot": plot}, indent=2))
    else:
        print("\n".join(lr_find_report(result, plot)))
    return 0 if result.suggested_lr is not None else 1


def _presets(args: argparse.Namespace) -> int:
    import yaml

    from orchestrator.errors import UsageError
    from search_spaces import available_presets, preset_mapping

    names = available_presets()
    if args.name is not None:
        if args.name not in names:
            raise UsageError(f"no preset named {args.name!r}; presets: {', '.join(names)}. "
                             "Run `stepsize presets` to list them with what each searches.")
        print(f"# `search_space: {args.name}` in a study file searches this space")
        print(yaml.safe_dump(preset_mapping(args.name), sort_keys=False).rstrip())
        return 0
    print("presets (use one with `search_space: NAME` in a study file; `stepsize presets NAME` shows it in full):")
    width = max(len(name) for name in names)
    for name in names:
        print(f"  {name:<{width}}  {_preset_line(preset_mapping(name))}")
    return 0


def _preset_line(space: dict, shown: int = 3) -> str:
    """What a preset searches, in one line: its first parameters with their ranges or choices,
    then the names of the rest."""
    parts = []
    for name, value in list(space.items())[:shown]:
        if not isinstance(value, dict):
            parts.append(f"{name}={value}")
        elif "choices" in value:
            parts.append(f"{name} in {{{', '.join(str(c) for c in value['choices'])}}}")
        elif "low" in value and "high" in value:
            scale = " log" if value.get("log") else ""
            parts.append(f"{name} {value['low']:g}..{value['high']:g}{scale}")
        else:
            parts.append(name)
    rest = list(space)[shown:]
    if rest:
        parts.append(f"+{len(rest)} more ({', '.join(rest[:5])}{', ...' if len(rest) > 5 else ''})")
    return ", ".join(parts)


def _ui(args: argparse.Namespace) -> int:
    from orchestrator.tracking.ui import serve

    return serve(args.name, args.storage, host=args.host, port=args.port)


def _cluster(args: argparse.Namespace) -> int:
    from cluster.local.cli import run

    return run(args)


_COMMANDS = {"launch": _launch, "resume": _resume, "status": _status, "best": _best, "presets": _presets, "lr-find": _lr_find, "ui": _ui,
             "cluster": _cluster}



def run() -> None:
    """The console script: :func:`main`, then a prompt exit. Every exit handler runs (Ray's own
    shutdown stops a Ray this process started); the interpreter's slow teardown of Ray's, torch's
    and MLflow's modules (seconds, after everything is written) is skipped."""
    from orchestrator.run.ray_session import release_at_study_end, wait_for_release

    code: list[int] = []
    atexit.register(_exit_now, code)  # registered before Ray's or MLflow's handlers: runs after them
    release_at_study_end()  # this process ends with its study: Ray is left while the record is written
    code.append(main())
    wait_for_release()
    sys.exit(code[0])


def _exit_now(code: list[int]) -> None:
    if code:  # main returned (an argparse error exits the usual way)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code[0])


if __name__ == "__main__":
    run()
