"""The driver's Ray session: Ray Tune's settings, token authentication, and joining or starting
the cluster. A Ray started on this machine for a study listens on 127.0.0.1 only (see
``orchestrator._compat.ray_config.local_ray_on_loopback``), and the token it uses is readable by
its owner only.

:func:`apply_tune_settings` runs first in ``launch`` and ``resume``, before anything imports Ray
Tune (Ray reads some settings when it is imported). Token authentication: Ray turns it on by
itself for a cluster it starts (``ray.init()`` with no address) and for ``address="auto"`` when a
token is found; a driver given ``HOST:PORT`` must have ``RAY_AUTH_MODE=token`` set explicitly.
When the user hands stepsize a token (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) and leaves the
mode unset, :func:`prepare_driver_auth` sets it, so the token is used rather than silently
ignored. An explicit ``RAY_AUTH_MODE`` is always respected.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from orchestrator.credentials import protected_logger
from orchestrator.errors import RayAuthError, ServiceUnreachable

logger = protected_logger(__name__)

MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENVS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")

# Tune's per-trial CSV/JSON/TensorBoard files are not needed: Optuna holds the study and MLflow
# the record. Skipping them removes file writes from every result.
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_THRESHOLD_S": "30",
    # Trials with several DDP workers run as Ray Train (v1) trainers inside Tune trials.
    "RAY_TRAIN_V2_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    # Resume reads the Optuna storage and the trials' checkpoints, not Tune's experiment state:
    # snapshot it rarely.
    "TUNE_GLOBAL_CHECKPOINT_S": "300",
    # A failed trial's last result carries the error, not the objective.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}
_RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air")


def apply_tune_settings(verbose: bool = False) -> None:
    """Ray Tune's settings for a stepsize driver (a value the user set wins), and Ray's own logs
    down to errors unless ``verbose``."""
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    if not verbose:
        for name in _RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def prepare_driver_auth(address: str | None) -> bool:
    """Set ``RAY_AUTH_MODE=token`` for a driver joining ``address`` with a token given in the
    environment; returns whether token authentication is on for this driver."""
    mode = os.environ.get(MODE_ENV)
    if mode is not None:
        return mode.lower() == "token"
    if address is None or not any(os.environ.get(name) for name in TOKEN_ENVS):
        return False
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and not os.environ.get("RAY_AUTH_TOKEN") and not os.path.isfile(os.path.expanduser(path)):
        raise RayAuthError(
            f"RAY_AUTH_TOKEN_PATH is {path!r}, which is not a file. Point it at the cluster's token file "
            "(`stepsize cluster status` prints it for a local cluster; `ray get-auth-token` prints the token)."
        )
    os.environ[MODE_ENV] = "token"
    from orchestrator._compat.ray_config import reload_ray_config

    reload_ray_config()  # only does something when Ray was imported before this
    return True


def worker_env() -> dict:
    """Workers import workloads as the driver does: its working folder and PYTHONPATH first; on a
    cluster started apart from the driver they also need its Ray Train version (v1)."""
    paths = [os.getcwd()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
                         "RAY_TRAIN_V2_ENABLED": os.environ.get("RAY_TRAIN_V2_ENABLED", "0")}}


def token_path() -> Path | None:
    """The file Ray reads its authentication token from: ``RAY_AUTH_TOKEN_PATH``, else
    ``~/.ray/auth_token``; None when the token is given in ``RAY_AUTH_TOKEN`` itself."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()


def check_token_file(path: Path | None) -> bool:
    """Warn when the token file Ray will use can be read by other users; True when it is private
    (or there is none)."""
    if path is None or not path.is_file():
        return True
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("Ray's authentication token %s can be read by other users (mode %04o): anyone who can read it "
                       "can run code on the cluster. Make it private: chmod 600 %s", path, mode, path)
        return False
    return True


def private_local_token() -> Path | None:
    """For a Ray started on this machine with token authentication (Ray's default): the token file
    it will use, created readable by its owner only when there is none yet (Ray would write it
    readable by all), and checked when there is."""
    if os.environ.get(MODE_ENV, "token").lower() != "token":
        return None
    path = token_path()
    if path is not None and not path.exists():
        write_private_token(path)
    check_token_file(path)
    return path


def write_private_token(path: Path) -> None:
    """A new Ray token at ``path`` (which must not exist), readable by its owner only; in Ray's own
    format (256 random bits, hex)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))


#: Seconds a Ray address has to answer stepsize's check before ``ray.init``.
PROBE_TIMEOUT_S = 5.0
#: Ray's own bounds on joining a cluster (a value the user set wins): its GCS client tries twice,
#: 10 s each, instead of 20 times 40 s when the address stops answering between check and join.
JOIN_ENV = {"RAY_NUM_REDIS_GET_RETRIES": "2", "RAY_py_gcs_connect_timeout_s": "10"}
_START_ONE = ("start one with `stepsize cluster up` (and export the line it prints) or `ray start --head`, "
              "or leave `address` out to start Ray on this machine for the study")


def driver_token(address: str) -> tuple[str | None, str]:
    """The token ``ray.init(address)`` will send (None when token mode is off or no token is
    found) and where it comes from, as Ray looks for it."""
    mode = os.environ.get(MODE_ENV)
    if mode is None and address != "auto" or mode is not None and mode.lower() != "token":
        return None, f"{MODE_ENV} is not `token`"
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    path = token_path()
    if path is not None and path.is_file():
        return path.read_text().strip() or None, str(path)
    return None, f"no RAY_AUTH_TOKEN and no token file at {path}"


def _split(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (an IPv6 host may be in brackets)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def check_ray_address(address: str, where: str) -> None:
    """Before ``ray.init``: the Ray cluster at ``address`` (``auto`` or ``HOST:PORT``, given as
    ``where``) answers, as Ray, and takes this driver's token; :class:`ServiceUnreachable`
    naming ``where``, the address and what to check otherwise."""
    import socket

    from orchestrator._compat.ray_config import auto_address, probe_ray

    shown = address
    if address == "auto":
        found = auto_address()
        if found is None:
            raise ServiceUnreachable(f"{where} is `auto`, which joins a Ray cluster already running on this machine "
                                     f"or in RAY_ADDRESS, and there is none: {_START_ONE}.")
        if found == "auto":
            return  # an unchecked Ray: it looks for the cluster itself
        shown, address = f"auto ({found})", found
    try:
        host, port = _split(address)
    except ValueError:
        raise ServiceUnreachable(f"{where} is {address!r}; expected auto or HOST:PORT.") from None
    check = (f"Check that the cluster is up (`ray status` on its head node; `stepsize cluster status` for a local "
             f"one), that {host} is reachable from this machine and that {port} is the head's GCS port, as "
             f"`ray start --head` printed it (6379 by default); or {_START_ONE}.")
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = "no answer within {:g} s".format(PROBE_TIMEOUT_S) if isinstance(exc, TimeoutError) else \
            (exc.strerror or str(exc)).lower()
        raise ServiceUnreachable(f"cannot reach the Ray cluster at {shown} ({where}): {reason}. {check}") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # a TLS cluster: the plain probe cannot speak to it, ray.init will
    token, source = driver_token(address)
    answer = probe_ray(host, port, False, token, PROBE_TIMEOUT_S)
    if answer == "not-ray":
        raise ServiceUnreachable(f"{shown} ({where}) answers, but not as a Ray cluster's GCS. {check}")
    if answer == "unauthenticated":
        raise ServiceUnreachable(_auth_message(shown, where, token, source))


def _auth_message(shown: str, where: str, token: str | None, source: str) -> str:
    how = ("Give the driver the cluster's token before the command: export RAY_AUTH_MODE=token and either "
           "RAY_AUTH_TOKEN=TOKEN or RAY_AUTH_TOKEN_PATH=FILE (`ray get-auth-token` on a node of the cluster prints "
           "the token; for a cluster of `stepsize cluster up`, `stepsize cluster status` prints its token file "
           "and the export line).")
    if token is None:
        return f"the Ray cluster at {shown} ({where}) uses token authentication and this driver has no token " \
               f"({source}). {how}"
    return f"the Ray cluster at {shown} ({where}) refused this driver's token (from {source}): it is not this " \
           f"cluster's token. {how}"


def _join(ray: Any, options: dict, address: str) -> None:
    """``ray.init`` for a cluster that passed :func:`check_ray_address`; a failure still left
    is one :class:`ServiceUnreachable`."""
    try:
        ray.init(**options)
    except (ConnectionError, TimeoutError, ray.exceptions.AuthenticationError) as exc:
        if ray.is_initialized():
            ray.shutdown()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ServiceUnreachable(f"cannot join the Ray cluster at {address} (--address / `address`): {first}. "
                                 "Check that the cluster is up (`ray status` on its head node) and that this "
                                 "driver has its token (RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or "
                                 "RAY_AUTH_TOKEN_PATH).") from None


def cluster_address(address: str | None) -> str | None:
    """The cluster a driver given ``address`` joins: ``address``, else ``RAY_ADDRESS``, else None
    (a Ray started on this machine)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def preflight(address: str | None) -> None:
    """Before anything is written: the token set-up, and for a cluster its address checked
    (:func:`check_ray_address`). A Ray Client address (``ray://``) in ``RAY_ADDRESS`` is refused
    (the study file's ``address`` refuses it already): Ray Tune would run the study's loop on the
    cluster, away from the searcher's storage and the MLflow record."""
    target = cluster_address(address)
    where = "--address / `address`" if address else "RAY_ADDRESS"
    if target is not None and target.startswith("ray://"):
        raise ServiceUnreachable(f"RAY_ADDRESS is {target!r}, a Ray Client address, which stepsize does not use: "
                                 "Ray Tune would run the study's loop on the cluster, away from its storage and "
                                 "MLflow record. Unset it, or set it to the head's HOST:PORT (6379 by default).")
    if address is None:
        private_local_token()
    else:
        prepare_driver_auth(address)  # before Ray is imported: a token given for a cluster turns auth on
        if os.environ.get(MODE_ENV, "token").lower() == "token":
            check_token_file(token_path())
    if target is not None:
        for key, value in JOIN_ENV.items():
            os.environ.setdefault(key, value)
        check_ray_address(target, where)


def ensure_ray(address: str | None, verbose: bool = False) -> None:
    """Connect to the Ray cluster at ``address`` or start one on this machine (idempotent). A Ray
    started here listens on 127.0.0.1 only and keeps its token private."""
    from orchestrator._compat.ray_config import local_ray_on_loopback

    loaded = sys.modules.get("ray")
    if loaded is not None and loaded.is_initialized():
        return
    preflight(address)
    import ray

    options = dict(address=address, runtime_env=worker_env(), include_dashboard=False if address is None else None,
                   logging_level=logging.INFO if verbose else logging.ERROR, log_to_driver=verbose,
                   configure_logging=True)
    if address is not None:
        _join(ray, options, address)
        return
    with local_ray_on_loopback():
        ray.init(**options)


# -- releasing Ray at the study's end ----------------------------------------------------------
_release_at_end = False
_releasing: threading.Thread | None = None


def release_at_study_end(enabled: bool = True) -> None:
    """For a process that ends with its study (the ``stepsize`` command): once the trials are
    done, leave Ray (and stop a Ray this process started) in the background while the study's
    record is written, instead of in Ray's exit handler afterwards. A library caller keeps Ray for
    its next study (the default)."""
    global _release_at_end
    _release_at_end = enabled


def trials_done() -> None:
    """The study's trials are over: start leaving Ray when :func:`release_at_study_end` asked."""
    global _releasing
    loaded = sys.modules.get("ray")
    if not _release_at_end or _releasing is not None or loaded is None or not loaded.is_initialized():
        return
    _releasing = threading.Thread(target=_shutdown, args=(loaded,), name="stepsize-ray-release", daemon=True)
    _releasing.start()


def wait_for_release(timeout_s: float = 30.0) -> None:
    """Wait (at most ``timeout_s``) for the leaving :func:`trials_done` started."""
    if _releasing is not None:
        _releasing.join(timeout_s)


def _shutdown(ray: Any) -> None:
    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001 - Ray's exit handler tries again
        logger.debug("leaving Ray at the study's end failed", exc_info=True)
