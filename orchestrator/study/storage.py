"""The Optuna study in its storage (the study's source of truth): the storage itself, one per
URL in a process; creating a study with its spec, loading it back, and a running trial's handle."""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from orchestrator.credentials import connectable, redact, redact_text
from orchestrator.errors import ServiceUnreachable, SpecError, StudyExistsError, StudyNotFoundError
from orchestrator.keys import StudyAttr
from orchestrator.spec import StudySpec, spec_from_mapping
from orchestrator.study.samplers import build_sampler

if TYPE_CHECKING:
    from orchestrator.study.retrying import RetryingStorage

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: The storage URL of each study created or loaded here (the driver lock's table lives there).
_URLS: "weakref.WeakKeyDictionary[optuna.Study, str]" = weakref.WeakKeyDictionary()

#: Seconds a database server has to accept a connection before the storage counts as unreachable.
CONNECT_TIMEOUT_S = 10
_ACCEPTED = ("an SQLAlchemy database URL whose driver is installed: sqlite:///FILE, "
             "postgresql+psycopg://USER@HOST:PORT/DB (installed with stepsize), or mysql+pymysql://USER@HOST/DB "
             "with PyMySQL installed")


#: URL -> seconds the driver's study waits for its storage (set by :func:`be_patient`).
_PATIENCE: dict[str, float] = {}


def be_patient(url: str, patience_s: float) -> None:
    """From now on, in this process, :func:`make_storage` gives ``url``'s storage wrapped so that
    a call the database cannot answer is retried for up to ``patience_s`` seconds (the driver's
    long-running study; quick commands run in processes of their own and fail fast)."""
    _PATIENCE[url] = patience_s
    if url in _patient_urls:
        _patient(url).patience_s = patience_s


_patient_urls: set[str] = set()


def patient_storage(url: str) -> "RetryingStorage | None":
    """The retrying storage the driver uses for ``url`` (None: none was asked for)."""
    return _patient(url) if url in _PATIENCE else None


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage for ``url``: :func:`rdb_storage`, or, after :func:`be_patient`, the same
    behind a :class:`~orchestrator.study.retrying.RetryingStorage` (one per URL in a process)."""
    patient = patient_storage(url)
    return patient if patient is not None else rdb_storage(url)


@functools.lru_cache(maxsize=8)
def _patient(url: str) -> "RetryingStorage":
    from orchestrator.study.retrying import RetryingStorage

    _patient_urls.add(url)
    # get_storage adds Optuna's own cache of finished trials, as passing the RDB storage would.
    plain = rdb_storage(url)
    return RetryingStorage(optuna.storages.get_storage(plain), url, _PATIENCE[url], plain=plain)


@functools.lru_cache(maxsize=8)
def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for ``url``, one per URL in a process (each holds a connection pool).

    SQLite gets a generous lock timeout and write-ahead logging with ``synchronous=NORMAL``: a
    commit survives the process being killed (only a power loss can drop the last ones), and the
    driver's writes no longer wait for an fsync each. Other databases get connection checks.
    """
    check_storage_url(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
        if url.startswith(("postgresql", "mysql")):  # their drivers wait for the OS's TCP timeout otherwise
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    from sqlalchemy.exc import DBAPIError

    try:
        storage = optuna.storages.RDBStorage(connectable(url, "storage"), engine_kwargs=engine_kwargs)
    except DBAPIError as exc:
        raise unreachable_storage(url, exc) from None
    if url.startswith("sqlite"):
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # connections opened from now on get the pragmas
    return storage


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_file(url: str) -> Path | None:
    """The file of an SQLite storage URL (None for another database or an in-memory one)."""
    if not url.startswith("sqlite:///") or url[len("sqlite:///"):] in ("", ":memory:"):
        return None
    return Path(os.path.expanduser(url[len("sqlite:///"):].split("?", 1)[0]))


def _sqlite_missing(url: str) -> bool:
    path = _sqlite_file(url)
    return path is not None and not path.is_file()


def check_storage_url(url: str) -> None:
    """Refuse, as a :class:`SpecError` naming ``storage``, a URL no storage can be opened at: an
    unknown scheme, a database whose Python driver is not installed, an SQLite file in a folder
    that does not exist or cannot be written. Connects to nothing and creates nothing."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError

    shown = redact(url)
    scheme = url.partition("://")[0] or url
    try:
        create_engine(connectable(url, "storage")).dispose()  # loads the dialect and its driver only
    except ArgumentError:
        raise SpecError("storage", shown, _ACCEPTED, f"SQLAlchemy knows no database `{scheme}`: fix the scheme "
                        "in `storage` or --storage.") from None
    except ImportError as exc:
        raise SpecError("storage", shown, _ACCEPTED, f"The Python driver for `{scheme}` is not installed "
                        f"({exc}): install it, or point `storage` / --storage at another database.") from None
    path = _sqlite_file(url)
    if path is None or path.is_file():
        return
    folder = path.parent.absolute()
    if not folder.is_dir():
        fix = f"{folder} is a file, not a folder:" if folder.exists() else \
            f"The folder {folder} does not exist: create it (mkdir -p {folder}) or"
        raise SpecError("storage", shown, "an SQLite file in an existing folder",
                        f"{fix} point `storage` / --storage at a file in another folder.")
    try:  # a real write: permissions, a read-only file system, root
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        raise SpecError("storage", shown, "an SQLite file in a folder this user can write",
                        f"The folder {folder} is not writable, so the database file cannot be created there: "
                        "point `storage` / --storage at a file in a folder you can write, or fix its permissions.")


def _reason(exc: Exception) -> str:
    """The driver's reason for a failed connection, in one line ("connection refused")."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    line = line.rsplit(" failed: ", 1)[-1].strip()
    if "timeout expired" in line or "timed out" in line:
        line = f"no answer within {CONNECT_TIMEOUT_S} s"
    return redact_text(line[:1].lower() + line[1:])


def unreachable_storage(url: str, exc: Exception) -> SpecError | ServiceUnreachable:
    """The error for a storage that could not be opened: :class:`SpecError` for an SQLite file,
    :class:`ServiceUnreachable` for a database server, naming ``storage`` / ``--storage``."""
    shown = redact(url)
    if _sqlite_file(url) is not None:
        return SpecError("storage", shown, "an SQLite file this user can read and write",
                         f"SQLite could not open it ({_reason(exc)}): check the file and its folder's permissions, "
                         "or point `storage` / --storage at another file.")
    return ServiceUnreachable(
        f"cannot connect to the Optuna storage at {shown} (`storage` in the study file, --storage on the "
        f"command line): {_reason(exc)}. Start the database server, check the host, port and database name in "
        "the URL, and the password (~/.pgpass or PGPASSWORD for PostgreSQL); nothing was created.")


def study_names(url: str) -> list[str]:
    """Names of the studies in the storage at ``url`` (creates nothing for a missing SQLite file)."""
    check_storage_url(url)
    if _sqlite_missing(url):
        return []
    return optuna.get_all_study_names(make_storage(url))


def refuse_existing_study(spec: StudySpec) -> None:
    """Raise :class:`StudyExistsError` when ``spec``'s name is taken in its storage."""
    if spec.name in study_names(spec.storage):
        existing = optuna.load_study(study_name=spec.name, storage=make_storage(spec.storage))
        raise StudyExistsError(spec.name, redact(spec.storage), len(existing.trials))


def next_free_name(spec: StudySpec) -> str:
    """``spec.name`` if it is free in its storage, else the first free ``NAME-2``, ``NAME-3``..."""
    taken = set(study_names(spec.storage))
    if spec.name not in taken:
        return spec.name
    suffix = 2
    while f"{spec.name}-{suffix}" in taken:
        suffix += 1
    return f"{spec.name}-{suffix}"


def storage_url(study: optuna.Study) -> str | None:
    """The storage URL ``study`` was created or loaded from here (None for any other study)."""
    return _URLS.get(study)


def register_url(study: optuna.Study, url: str) -> None:
    """Record that ``study`` lives at ``url`` (for :func:`storage_url`)."""
    _URLS[study] = url


def create_study(spec: StudySpec) -> optuna.Study:
    """Create ``spec``'s study in its storage with the spec in the study's attributes: both or
    neither (the study is deleted again when storing the spec fails, so the name stays free).
    :class:`StudyExistsError` when the name is taken, also by a launch racing this one."""
    refuse_existing_study(spec)
    storage = make_storage(spec.storage)
    try:
        study = optuna.create_study(
            study_name=spec.name, storage=storage, sampler=build_sampler(spec), direction=spec.objective.direction
        )
    except optuna.exceptions.DuplicatedStudyError:  # another launch created it since the check
        existing = optuna.load_study(study_name=spec.name, storage=storage)
        raise StudyExistsError(spec.name, redact(spec.storage), len(existing.trials)) from None
    try:
        store_spec(study, spec)
    except BaseException:  # an error, Ctrl-C: no study is left behind without its spec
        optuna.delete_study(study_name=spec.name, storage=storage)
        raise
    _URLS[study] = spec.storage
    return study


def store_spec(study: optuna.Study, spec: StudySpec) -> None:
    """Record ``spec`` as the study's spec (a resume that extends the budget updates it)."""
    study.set_user_attr(StudyAttr.SPEC, spec.to_stored_dict())


def load_study(name: str, storage_url: str, *, sampler: bool = True) -> tuple[optuna.Study, StudySpec]:
    """Load a study and the spec it was launched with; :class:`StudyNotFoundError` if absent.

    ``sampler=False``, for a caller that only reads the study (``status``, ``best``): the spec's
    sampler is not built (TPE's imports SciPy) and the study gets Optuna's cheap
    :class:`~optuna.samplers.RandomSampler`, which nothing asks."""
    names = study_names(storage_url)
    if name not in names:
        raise StudyNotFoundError(name, redact(storage_url), names)
    # RandomSampler: nothing to set up (Optuna's default, TPE, would be built only to be replaced).
    study = optuna.load_study(study_name=name, storage=make_storage(storage_url),
                              sampler=optuna.samplers.RandomSampler())
    _URLS[study] = storage_url
    spec = spec_from_mapping(study.user_attrs[StudyAttr.SPEC])
    if not sampler:
        return study, spec
    # A sampler seeded as at launch would draw its first (random) configurations again; seed it
    # with how far the study got instead, which is as reproducible and never repeats them.
    done = len(study.get_trials(deepcopy=False))
    study.sampler = build_sampler(dataclasses.replace(spec, seed=spec.seed + 7919 * done) if done else spec)
    return study, spec


@functools.lru_cache(maxsize=64)
def _study_id(storage_url: str, study_name: str) -> int:
    return make_storage(storage_url).get_study_id_from_name(study_name)


def trial_id(study: optuna.Study, storage_url: str, number: int) -> int:
    """The storage's id of trial ``number`` of ``study`` (stored at ``storage_url``), through
    Optuna's public storage API (the study's id is looked up once per process)."""
    return make_storage(storage_url).get_trial_id_from_study_id_trial_number(_study_id(storage_url, study.study_name),
                                                                             number)


def running_trial(study: optuna.Study, storage_url: str, number: int) -> optuna.trial.Trial:
    """A handle on trial ``number`` of ``study`` (stored at ``storage_url``) through which it can
    be suggested on, reported to and told, as the one ``study.ask()`` returned when it began."""
    return optuna.trial.Trial(study, trial_id(study, storage_url, number))
