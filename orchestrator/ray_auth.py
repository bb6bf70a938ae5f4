"""Ray's token authentication for a driver that joins a running cluster.

Ray turns token authentication on by itself for a cluster it starts (``ray.init()`` with no
address) and for ``address="auto"`` when a token is found; a driver given ``HOST:PORT`` must have
``RAY_AUTH_MODE=token`` set explicitly. When the user hands stepsize a token (``RAY_AUTH_TOKEN`` or
``RAY_AUTH_TOKEN_PATH``) and leaves the mode unset, :func:`prepare_driver_auth` sets it, so the
token is used rather than silently ignored. An explicit ``RAY_AUTH_MODE`` is always respected.
"""

from __future__ import annotations

import os

MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENVS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


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
        raise FileNotFoundError(
            f"RAY_AUTH_TOKEN_PATH is {path!r}, which is not a file. Point it at the cluster's token file "
            "(`stepsize cluster status` prints it for a local cluster; `ray get-auth-token` prints the token)."
        )
    os.environ[MODE_ENV] = "token"
    _refresh_ray_config()
    return True


def _refresh_ray_config() -> None:
    """Make an already imported Ray read the mode again (as Ray does when it turns auth on)."""
    try:
        from ray._raylet import Config
    except ImportError:  # pragma: no cover - Ray is a dependency
        return
    Config.initialize("")
