"""The Python API: the same operations as the command line."""

from __future__ import annotations

import os
from typing import Any, TextIO

from orchestrator.errors import NoCompletedTrialError
from orchestrator.keys import Config, Result
from orchestrator.spec import DEFAULT_STORAGE, StudySpec, load_spec, with_overrides
from orchestrator.study.storage import load_study
from orchestrator.study.summary import StudySummary, summarize


def launch(
    study: str | os.PathLike[str] | StudySpec,
    *,
    quiet: bool = False,
    verbose: bool = False,
    stream: TextIO | None = None,
    new: bool = False,
    **overrides: Any,
) -> StudySummary:
    """Validate and run a study to its budget; return where it ended.

    ``study`` is a YAML file or a :class:`StudySpec`. Overrides: ``trials``, ``max_epochs``,
    ``epochs`` (``budget.epochs``), ``seed``, ``storage``, ``address``, ``concurrency``, ``results_dir``, ``tracking_uri``.
    Raises :class:`~orchestrator.errors.SpecError` for a bad field before anything is created,
    and :class:`~orchestrator.errors.StudyExistsError` when the name is taken (``new=True``
    names the study ``NAME-2``, ``NAME-3``... instead).
    """
    from orchestrator.run import launch as run

    if isinstance(study, StudySpec):
        spec = with_overrides(study, **overrides)
    else:
        spec = load_spec(study, **overrides)
    return run.launch(spec, run.Console(quiet, verbose, stream), new=new).summary


def resume(
    name: str,
    *,
    storage: str = DEFAULT_STORAGE,
    trials: int | None = None,
    address: str | None = None,
    quiet: bool = False,
    verbose: bool = False,
    stream: TextIO | None = None,
    epochs: int | None = None,
) -> StudySummary:
    """Continue study ``name`` after its driver stopped (killed, machine lost, Ctrl-C).

    Finished trials are kept; trials that were running run again from their last checkpoint
    (from the start when Ray's results folder is gone); new trials fill the budget, which
    ``trials`` (trials in all) and ``epochs`` (epochs in all, ``budget.epochs``) can raise to
    extend a finished study. MLflow records continue in the same runs.
    """
    from orchestrator.run import launch as run

    return run.resume(name, storage, trials, address, run.Console(quiet, verbose, stream), epochs=epochs).summary


def status(name: str, storage: str = DEFAULT_STORAGE) -> StudySummary:
    """Trials by state and the best so far, read from the Optuna storage."""
    study, spec = load_study(name, storage, sampler=False)
    return summarize(study, spec)


def best(name: str, storage: str = DEFAULT_STORAGE) -> dict[str, Any]:
    """The best trial: ``{study, trial, metric, mode, value, metrics, config}``, and
    ``lr_scaling`` when the study scaled the learning rate with the batch size.

    ``config`` is the configuration to train with (sampled values plus the space's fixed ones);
    with ``lr_scaling`` on, its ``learning_rate`` is the effective rate the trial trained at, and
    ``lr_scaling`` gives the rule, the reference batch size and both rates.
    Raises :class:`~orchestrator.errors.NoCompletedTrialError` (a ``LookupError``) when no trial
    has completed yet.
    """
    study, spec = load_study(name, storage, sampler=False)
    summary = summarize(study, spec)
    if summary.best_number is None:
        raise NoCompletedTrialError(f"study {name!r} has no completed trial yet ({summary.counts or 'no trials'})")
    result: dict[str, Any] = {
        "study": summary.name,
        "trial": summary.best_number,
        "metric": summary.metric,
        "mode": summary.mode,
        "value": summary.best_value,
        "metrics": summary.best_metrics,
        "config": summary.best_config,
    }
    config = summary.best_config
    if Config.BASE_LR in config and spec.lr_scaling.rule != "none":
        result["lr_scaling"] = {
            "rule": spec.lr_scaling.rule,
            "reference_batch_size": spec.lr_scaling.reference_batch_size,
            Config.BASE_LR: config[Config.BASE_LR],
            Result.EFFECTIVE_LR: config["learning_rate"],
        }
    return result
