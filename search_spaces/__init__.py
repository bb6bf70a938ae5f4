"""Search spaces for stepsize: YAML presets and their translation into Optuna distributions."""

from orchestrator.errors import SpaceError
from search_spaces.presets import (
    DEFAULT_PRESET,
    available_presets,
    load_preset,
    preset_mapping,
)
from search_spaces.space import Param, SearchSpace

__all__ = [
    "DEFAULT_PRESET",
    "Param",
    "SearchSpace",
    "SpaceError",
    "available_presets",
    "load_preset",
    "preset_mapping",
]
