"""Adapter: Ray's settings that it reads once, when it is imported.

- :func:`reload_ray_config`: Ray reads ``RAY_AUTH_MODE`` into its C++ config when it is imported. When stepsize turns token
authentication on for a driver (``orchestrator.run.ray_session.prepare_driver_auth``) before Ray
is imported, as ``stepsize launch`` does, nothing more is needed. A Python caller that imported Ray
first needs the config read again, which only the private ``ray._raylet.Config.initialize`` does
(as Ray itself does when it turns authentication on). It is called only with the Ray versions in
:data:`CHECKED_RAY_VERSIONS` (also in ``pyproject.toml`` under ``[tool.stepsize.compat]``);
with another version, stepsize warns and leaves Ray's config as it was imported (Ray's stock
behaviour).
- :func:`local_ray_on_loopback`: a Ray started on this machine for one study needs no port beyond
  127.0.0.1. Ray keeps every process of a single-machine cluster on loopback when its switch
  ``ENABLE_RAY_CLUSTER`` is off, which it reads from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once,
  at import; the adapter turns it off for the start of the study's Ray only. With another Ray
  version, stepsize warns that the ports listen on all interfaces (Ray's stock behaviour).

``tests/unit/compat/test_ray_config_contract.py`` guards both.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from orchestrator.credentials import protected_logger

logger = protected_logger(__name__)

#: The Ray releases both functions were checked against.
CHECKED_RAY_VERSIONS = ("2.60.0",)


def _problem(module: str, name: str) -> str | None:
    """Why the private ``module.name`` cannot be used with the installed Ray, or None."""
    import ray

    if ray.__version__ not in CHECKED_RAY_VERSIONS:
        return f"Ray {ray.__version__} is not one it was checked against ({', '.join(CHECKED_RAY_VERSIONS)})"
    try:
        owner: Any = importlib.import_module(module)
        for part in name.split("."):
            owner = getattr(owner, part)
    except (ImportError, AttributeError):
        return f"Ray {ray.__version__} has no {module}.{name}"
    return None


def reload_problem() -> str | None:
    """Why :func:`reload_ray_config` cannot reload with the installed Ray, or None when it can."""
    return _problem("ray._raylet", "Config.initialize")


def loopback_problem() -> str | None:
    """Why :func:`local_ray_on_loopback` cannot keep Ray on loopback, or None when it can."""
    return _problem("ray._private.ray_constants", "ENABLE_RAY_CLUSTER")


def adapter_problem() -> str | None:
    """Why either function cannot work with the installed Ray, or None when both can."""
    return reload_problem() or loopback_problem()


def reload_ray_config() -> bool:
    """Have Ray read its environment-based config again if it is already imported; True when
    Ray will see the current environment (it was not imported yet, or the reload worked)."""
    if "ray" not in sys.modules:
        return True  # Ray reads the environment when it is imported
    problem = reload_problem()
    if problem is not None:
        logger.warning("Ray was imported before stepsize set RAY_AUTH_MODE and cannot read it again (%s); "
                       "set RAY_AUTH_MODE=token in the environment before Python starts.", problem)
        return False
    from ray._raylet import Config

    Config.initialize("")
    return True


#: Ray's switch between a single-machine Ray on 127.0.0.1 ("0") and one reachable from other nodes.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def local_ray_on_loopback() -> Iterator[bool]:
    """While a Ray is started on this machine inside the block, keep every one of its processes on
    127.0.0.1; yields whether it will be. A value of ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` the user
    set is respected. Ray reads that switch into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``
    when it is imported, so the adapter sets the constant for the block and puts it back after (a
    later ``ray.init(address=...)`` in the same process joins a cluster as usual)."""
    if LOOPBACK_ENV in os.environ:
        yield os.environ[LOOPBACK_ENV].lower() not in ("1", "true")
        return
    problem = loopback_problem()
    if problem is not None:
        logger.warning("Ray started for this study listens on all network interfaces (%s); set %s=0 in the "
                       "environment to keep it on 127.0.0.1.", problem, LOOPBACK_ENV)
        yield False
        return
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"  # Ray's own processes started now read it too
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield True
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        os.environ.pop(LOOPBACK_ENV, None)


#: What :func:`probe_ray` calls: one cheap request of Ray's own gRPC protocol (an empty request
#: message), the GCS's for ``HOST:PORT`` and the Ray Client server's for ``ray://HOST:PORT``.
GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"
CLIENT_PROBE = "/ray.rpc.RayletDriver/ClusterInfo"


def probe_ray(host: str, port: int, client: bool, token: str | None, timeout: float) -> str:
    """Ask the Ray server at ``host:port`` one request, with ``token`` when given, before
    ``ray.init`` does (which retries for minutes and prints only its C++ log lines). Returns
    ``"ok"``, ``"unauthenticated"`` (it wants a token, or another one), ``"not-ray"`` (it answers
    but not as that Ray server) or ``"unchecked"`` (grpcio missing, or an unchecked Ray version)."""
    try:
        import grpc
    except ImportError:
        return "unchecked"
    if _problem("ray", "__version__") is not None:
        return "unchecked"
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 host in brackets
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(CLIENT_PROBE if client else GCS_PROBE)
        try:
            call(b"", timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return "unauthenticated"
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED):
                return "not-ray"  # no gRPC answer, or a gRPC server without that method
            # Any other answer comes from that Ray server's method (the Ray Client server wants
            # its session's metadata on every request, which a probe does not have).
    return "ok"


def auto_address() -> str | None:
    """The cluster ``ray.init(address="auto")`` would join (``RAY_ADDRESS``, else the latest
    ``ray start`` on this machine, else a GCS running here), or None when there is none; ``"auto"``
    itself when the installed Ray was not checked (Ray then looks for it as usual)."""
    if _problem("ray._private.services", "canonicalize_bootstrap_address") is not None:
        return "auto"
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        return None
