"""Contract of the Ray config adapter (orchestrator/_compat/ray_config.py) with the installed Ray:
the private ``ray._raylet.Config.initialize`` it calls is there on a checked release, and on any
other release stepsize leaves Ray's config alone and says how to set the mode instead."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import ray

from orchestrator._compat import ray_config
from orchestrator._compat.ray_config import reload_ray_config


def test_the_private_config_call_is_there():
    from ray._raylet import Config

    assert callable(Config.initialize)


def test_reloading_makes_an_imported_ray_read_the_auth_mode_again(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert reload_ray_config() is True


def test_before_ray_is_imported_nothing_needs_reloading():
    code = ("import sys; from orchestrator._compat.ray_config import reload_ray_config; "
            "assert reload_ray_config() is True and 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_on_an_unchecked_ray_the_config_is_left_alone_with_a_hint(monkeypatch, caplog):
    monkeypatch.setattr(ray, "__version__", "9.9.9")
    with caplog.at_level(logging.WARNING, logger=ray_config.__name__):
        assert reload_ray_config() is False
    assert any("RAY_AUTH_MODE=token" in r.getMessage() and "9.9.9" in r.getMessage() for r in caplog.records)


def test_the_loopback_switch_is_the_ray_constant_that_decides_the_node_address(monkeypatch):
    from ray._private import ray_constants, services

    from orchestrator._compat.ray_config import LOOPBACK_ENV, local_ray_on_loopback

    monkeypatch.delenv(LOOPBACK_ENV, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    assert isinstance(before, bool)
    with local_ray_on_loopback() as on_loopback:
        assert on_loopback and ray_constants.ENABLE_RAY_CLUSTER is False
        assert services.get_node_ip_address() in ("127.0.0.1", "::1")
        assert os.environ[LOOPBACK_ENV] == "0"  # the Ray processes started now read it too
    assert ray_constants.ENABLE_RAY_CLUSTER is before and LOOPBACK_ENV not in os.environ


def test_a_loopback_switch_the_user_set_is_respected(monkeypatch):
    from ray._private import ray_constants

    from orchestrator._compat.ray_config import LOOPBACK_ENV, local_ray_on_loopback

    monkeypatch.setenv(LOOPBACK_ENV, "1")
    before = ray_constants.ENABLE_RAY_CLUSTER
    with local_ray_on_loopback() as on_loopback:
        assert not on_loopback and ray_constants.ENABLE_RAY_CLUSTER is before
