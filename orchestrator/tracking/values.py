"""Turning Python values into MLflow params and metrics."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

_PARAM_MAX = 6000  # MLflow's limit on a param value


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay whole."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def param_text(value: Any) -> str:
    """A param value as MLflow stores it (strings as they are, the rest as JSON where that reads
    better than ``str``: lists, None and booleans)."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, (bool, list, tuple, dict)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text[:_PARAM_MAX]


def params(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    return {key: param_text(value) for key, value in flatten(mapping, prefix).items()}


def numeric(value: Any) -> bool:
    """A finite int or float (not a bool): what a metric may hold."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

