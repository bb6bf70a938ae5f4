"""Every error stepsize raises, under one root: :class:`StepsizeError`.

Every one reaches the terminal as one paragraph (its message), with the exit code its class
declares in ``exit_code``: 2 for input the user can fix (a bad field, a missing study, a study that
is busy), 1 for a study that could not do its job (a service it needs cannot be reached, every trial
failed, the objective was never reported); see :func:`orchestrator.cli.main`. The mixed-in built-in
bases (``ValueError``, ``LookupError``...) keep ``except`` clauses written for them working.
"""

from __future__ import annotations

from typing import Any

EXIT_USAGE = 2  # input the user can fix
EXIT_FAILED = 1  # the study could not do its job
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it


class StepsizeError(Exception):
    """The root of every error stepsize raises; ``exit_code`` is the command's exit status when
    it reaches the terminal."""

    exit_code: int = EXIT_FAILED


# -- the study file ----------------------------------------------------------------------------


class SpecError(StepsizeError, ValueError):
    """A field of a study spec (or a command-line override of it) holds a value that is not
    accepted. Raised before anything is created in any store.

    ``field`` is the dotted path of the field (``budget.trials``), ``value`` what was given and
    ``accepted`` what would be accepted; ``str()`` is one paragraph naming all three and, with
    ``hint``, how to fix it.
    """

    exit_code = EXIT_USAGE

    def __init__(self, field: str, value: Any, accepted: str, hint: str | None = None):
        self.field = field
        self.value = value
        self.accepted = accepted
        self.hint = hint
        shown = "missing" if value is None else _bounded_repr(value)  # never builds a huge repr
        if len(shown) > 120:
            shown = shown[:117] + "..."
        message = f"`{field}` is {shown}; expected {accepted}."
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep the fields when Ray ships the error between processes
        return (type(self), (self.field, self.value, self.accepted, self.hint))


def _bounded_repr(value: Any) -> str:
    """``repr(value)`` cut short while it is built (a few levels, items and characters), so a
    huge or deeply shared value is shown without walking all of it."""
    import reprlib

    shower = reprlib.Repr()
    shower.maxlevel, shower.maxdict, shower.maxlist, shower.maxtuple, shower.maxset = 3, 6, 6, 6, 6
    shower.maxstring, shower.maxother, shower.maxlong = 120, 120, 60
    return shower.repr(value)


class SpaceError(SpecError):
    """A field of the search space (``search_space.learning_rate.low``...) is not accepted."""


class UsageError(StepsizeError, ValueError):
    """A command-line option is not accepted (the message names it and what would be)."""

    exit_code = EXIT_USAGE


# -- the Optuna study ----------------------------------------------------------------------------


class StudyNotFoundError(StepsizeError, LookupError):
    """No study of that name is in the given Optuna storage."""

    exit_code = EXIT_USAGE

    def __init__(self, name: str, storage: str, known: list[str]):
        self.name = name
        self.storage = storage
        listing = ", ".join(known[:10]) if known else "none"
        super().__init__(
            f"no study named {name!r} in storage {storage}; studies there: {listing}. "
            "Pass --storage with the URL the study was launched with, or check the name."
        )


class NoCompletedTrialError(StepsizeError, LookupError):
    """The study has no completed trial, so it has no best configuration yet."""

    exit_code = EXIT_USAGE


class StudyExistsError(StepsizeError, RuntimeError):
    """``launch`` was pointed at a study name that already has trials in the storage."""

    exit_code = EXIT_USAGE

    def __init__(self, name: str, storage: str, n_trials: int):
        self.name = name
        super().__init__(
            f"study {name!r} already exists in {storage} with {n_trials} trials; stepsize will not "
            f"mix a new launch into it. Continue it with `stepsize resume {name}` (add --trials N to "
            "extend it to N trials), start a fresh study beside it with `stepsize launch --new` "
            "(named after the first free suffix), or give the study another `name`."
        )


class StudyBusyError(StepsizeError, RuntimeError):
    """Another live process (on this machine, or on ``host``) is running the study's driver."""

    exit_code = EXIT_USAGE

    def __init__(self, name: str, pid: int, host: str | None = None, beat_age_s: float | None = None,
                 stale_after_s: float | None = None):
        self.name, self.pid, self.host = name, pid, host
        self.beat_age_s, self.stale_after_s = beat_age_s, stale_after_s
        where = "this machine" if host is None else f"host {host}"
        beat = "" if beat_age_s is None else f" (its last heartbeat {beat_age_s:.0f} s ago)"
        takeover = "" if stale_after_s is None else (
            f" A driver that died is taken over once its heartbeat is {stale_after_s:.0f} s old"
            + (" (at once on this machine)." if host is None else "."))
        super().__init__(
            f"study {name!r} is being run right now by process {pid} on {where}{beat}; stop that "
            "process first (Ctrl-C, or kill it), then resume. Two drivers on one study would run "
            f"its trials twice.{takeover}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.pid, self.host, self.beat_age_s, self.stale_after_s))


# -- Ray ---------------------------------------------------------------------------------------------


class RayAuthError(StepsizeError, FileNotFoundError):
    """The token that Ray's authentication needs was pointed at but cannot be read."""

    exit_code = EXIT_USAGE


class ServiceUnreachable(StepsizeError, ConnectionError):
    """A service the study needs (the Ray cluster, the Optuna storage, the tracking server) did not
    answer; the message names the field or option that points at it and how to check it."""


class StorageGaveUp(ServiceUnreachable):
    """The driver's Optuna storage stayed unreachable for longer than ``storage_patience``; the
    study stopped as it was (running trials stay RUNNING) and resumes with ``resume``."""

    def __init__(self, url: str, cause: str, waited_s: float, resume: str | None = None):
        self.url, self.cause, self.waited_s, self.resume = url, cause, waited_s, resume
        then = f"Continue it, once the database answers, with: {resume}" if resume else \
            "Continue it with `stepsize resume NAME --storage URL` once the database answers."
        super().__init__(
            f"the Optuna storage at {url} did not answer for {waited_s:.0f} s ({cause}), longer than "
            "`storage_patience` in the study file allows, so the study stopped. Nothing is lost: finished trials "
            "are in the storage, and the trials that were running stay RUNNING and run again from their last "
            f"checkpoint. Check the database server (and the disk it writes to). {then}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.cause, self.waited_s, self.resume))


class ClusterError(StepsizeError, RuntimeError):
    """A local cluster could not be started, found or stopped; the message says what to do."""


# -- inside a trial ----------------------------------------------------------------------------------


class TrialConfigError(StepsizeError, ValueError):
    """A trial's configuration holds a value the training building blocks cannot use (an unknown
    optimizer or schedule, a negative learning rate...). The message names the key."""

    exit_code = EXIT_USAGE


class TrialDiverged(StepsizeError):
    """Raised inside a trial when its loss diverges; the trial runner records it and stops."""

    def __init__(self, epoch: int, loss: float, reason: str):
        self.epoch = epoch
        self.loss = loss
        self.reason = reason
        super().__init__(f"diverged in epoch {epoch}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.epoch, self.loss, self.reason))


class TrialLimitExceeded(StepsizeError):
    """Raised inside a trial's thread by its watchdog when the trial broke a per-trial limit
    (``limits:``); the trial runner reports it and stops."""

    def __init__(self, reason: str = "the trial exceeded a limit"):
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class TrialContextError(StepsizeError, RuntimeError):
    """A :class:`~orchestrator.trial.TrialContext` was used outside a running trial."""


class ScriptFailed(StepsizeError, RuntimeError):
    """A training script run as the workload exited non-zero, was killed, broke the reporting
    protocol or exited without reporting (the message ends with one line saying which)."""


class CheckpointError(StepsizeError, ValueError):
    """A trial's checkpoint cannot hold or give back what the workload registered with
    ``trial.restore(...)`` (the message names the object)."""


class HuggingFaceMissing(StepsizeError, ImportError):
    """``orchestrator.integrations.huggingface`` was imported without ``transformers`` or
    ``accelerate``; the message names the install line (``pip install 'stepsize[hf]'``)."""

    exit_code = EXIT_USAGE


class LightningMissing(StepsizeError, ImportError):
    """``orchestrator.integrations.lightning`` was imported without the ``lightning`` package; the
    message names the install line (``pip install 'stepsize[lightning]'``)."""

    exit_code = EXIT_USAGE


class ObjectiveNotReported(StepsizeError, RuntimeError):
    """A trial's report lacks the objective metric: the study file and the workload disagree on its
    name. The study stops at the first such report (its trials are recorded as failed)."""

    def __init__(self, metric: str, number: int, epoch: int, reported: list[str], study: str,
                 given: str | None = None):
        self.metric, self.number, self.epoch, self.reported, self.study = metric, number, epoch, reported, study
        self.given = given
        keys = ", ".join(reported) if reported else "no number at all"
        what = "without it" if given is None else f"with {metric}={given}, which is not a number"
        super().__init__(
            f"`objective.metric` is {metric!r}, but trial {number} reported epoch {epoch} {what}; the numbers it "
            f"reported: {keys}. Set `objective.metric` to the name the workload reports (and `objective.mode`: min "
            f"for a loss, max for an accuracy), or report it from the workload as a number with "
            f"trial.report({metric}=...). The study stopped at that first report; its trials are recorded as "
            f"failed in study {study!r}, so launch the fixed study file with --new (or another `name`)."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.metric, self.number, self.epoch, self.reported, self.study, self.given))


class StudyFailed(StepsizeError, RuntimeError):
    """The study ran but has no best configuration: every trial failed, or none completed.
    ``summary`` is where the study stands."""

    def __init__(self, message: str, summary: Any = None):
        self.summary = summary
        super().__init__(message)


class StudyInterrupted(StepsizeError, RuntimeError):
    """The user stopped the study (Ctrl-C); trials that were running stay resumable. ``summary``
    is where the study stands."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, summary: Any = None):
        self.summary = summary
        super().__init__(message)


# -- the LR range test -----------------------------------------------------------------------------


class LRRangeError(StepsizeError, ValueError):
    """An argument of the LR range test is out of range (the message names it)."""

    exit_code = EXIT_USAGE


class LRRangeSetupMissing(StepsizeError, LookupError):
    """A user workload has no ``<function>_lr_range_setup`` to build the range test from."""

    exit_code = EXIT_USAGE


# -- the MLflow record --------------------------------------------------------------------------------


class TrackingUnavailable(StepsizeError, RuntimeError):
    """The tracking store could not be reached; nothing is lost, the records are to be retried."""


class TrackingRefused(StepsizeError, RuntimeError):
    """The tracking store refused a request for good (a param that would change value, a deleted
    run): retrying cannot help, so the record is dropped."""


class NoRecordError(StepsizeError, LookupError):
    """The study has no MLflow record yet (no run of it reached the tracking store)."""

    exit_code = EXIT_USAGE


class UIStartError(StepsizeError, RuntimeError):
    """``mlflow ui`` did not start."""


class PlotSkipped(StepsizeError):
    """A study plot cannot be drawn from the trials there are (the message says why)."""
