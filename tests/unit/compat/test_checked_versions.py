"""The versions the adapters were checked against are one list, in three places that must agree:
each adapter's constant, ``[tool.stepsize.compat]`` in pyproject.toml and CI's constraints; and
the installed Optuna and Ray are among them (a test that fails loudly when a library changes
under an adapter)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest
import ray

from orchestrator._compat import optuna_tpe, ray_config
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


@pytest.mark.parametrize("library,adapter,checked", [
    (optuna, optuna_tpe, CHECKED_OPTUNA_VERSIONS),
    (ray, ray_config, CHECKED_RAY_VERSIONS),
], ids=["optuna", "ray"])
def test_the_installed_library_is_one_its_adapter_was_checked_against(library, adapter, checked):
    assert library.__version__ in checked, (
        f"{library.__name__} {library.__version__} is not among {checked}: stepsize falls back to its stock "
        f"behaviour. Re-check {adapter.__name__.replace('.', '/')}.py against it (its contract test in "
        "tests/unit/compat/), then add the version there, in pyproject.toml [tool.stepsize.compat] and in "
        ".ci/constraints.txt."
    )
    assert adapter.adapter_problem() is None
