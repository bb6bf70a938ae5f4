"""The versions the adapters were checked against are one list, in three places that must agree:
each adapter's constant, ``[tool.stepsize.compat]`` in pyproject.toml and CI's constraints."""

from __future__ import annotations

import tomllib
from pathlib import Path

from orchestrator._compat.optuna_tpe import CHECKED_OPTUNA_VERSIONS
from orchestrator._compat.ray_config import CHECKED_RAY_VERSIONS

ROOT = Path(__file__).resolve().parents[3]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    return pins


def test_adapters_pyproject_and_ci_name_the_same_checked_versions():
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["stepsize"]["compat"]
    assert tuple(table["optuna"]) == CHECKED_OPTUNA_VERSIONS
    assert tuple(table["ray"]) == CHECKED_RAY_VERSIONS
    pins = _constraints()
    assert pins["optuna"] in CHECKED_OPTUNA_VERSIONS
    assert pins["ray"] in CHECKED_RAY_VERSIONS
