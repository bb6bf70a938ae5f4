"""Search-space presets shipped as YAML files in ``search_spaces/presets/``."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import yaml

from orchestrator.errors import SpaceError

if TYPE_CHECKING:
    from search_spaces.space import SearchSpace

DEFAULT_PRESET = "default"


def available_presets() -> list[str]:
    """Names of the shipped presets (file names without ``.yaml``)."""
    folder = resources.files("search_spaces") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_mapping(name: str, where: str = "search_space") -> dict:
    """The raw mapping of preset ``name``; :class:`SpaceError` if there is none by that name."""
    if name not in available_presets():
        raise SpaceError(where, name, f"a preset name ({', '.join(available_presets())}) or an inline mapping")
    text = (resources.files("search_spaces") / "presets" / f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def load_preset(name: str = DEFAULT_PRESET) -> SearchSpace:
    """Load a shipped preset as a :class:`SearchSpace`."""
    from search_spaces.space import SearchSpace  # imports Optuna: not needed to list or show presets

    return SearchSpace.from_mapping(preset_mapping(name), where=f"preset {name}")
