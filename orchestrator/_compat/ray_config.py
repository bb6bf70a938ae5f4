"""Adapter: make an already imported Ray read its environment-based settings again.

Ray reads ``RAY_AUTH_MODE`` into its C++ config when it is imported. When stepsize turns token
authentication on for a driver (``orchestrator.run.ray_session.prepare_driver_auth``) before Ray
is imported, as ``stepsize launch`` does, nothing more is needed. A Python caller that imported Ray
first needs the config read again, which only the private ``ray._raylet.Config.initialize`` does
(as Ray itself does when it turns authentication on). It is called only with the Ray versions in
:data:`CHECKED_RAY_VERSIONS` (also in ``pyproject.toml`` under ``[tool.stepsize.compat]``);
with another version, stepsize warns and leaves Ray's config as it was imported (Ray's stock
behaviour). ``tests/unit/compat/test_ray_config_contract.py`` guards it.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

#: The Ray releases ``reload_ray_config`` was checked against.
CHECKED_RAY_VERSIONS = ("2.60.0",)


def adapter_problem() -> str | None:
    """Why the config cannot be reloaded with the installed Ray, or None when it can."""
    import ray

    if ray.__version__ not in CHECKED_RAY_VERSIONS:
        return f"Ray {ray.__version__} is not one it was checked against ({', '.join(CHECKED_RAY_VERSIONS)})"
    try:
        from ray._raylet import Config
    except ImportError:
        return f"Ray {ray.__version__} has no ray._raylet.Config"
    if not callable(getattr(Config, "initialize", None)):
        return f"Ray {ray.__version__} has no ray._raylet.Config.initialize"
    return None


def reload_ray_config() -> bool:
    """Have Ray read its environment-based config again if it is already imported; True when
    Ray will see the current environment (it was not imported yet, or the reload worked)."""
    if "ray" not in sys.modules:
        return True  # Ray reads the environment when it is imported
    problem = adapter_problem()
    if problem is not None:
        logger.warning("Ray was imported before stepsize set RAY_AUTH_MODE and cannot read it again (%s); "
                       "set RAY_AUTH_MODE=token in the environment before Python starts.", problem)
        return False
    from ray._raylet import Config

    Config.initialize("")
    return True
