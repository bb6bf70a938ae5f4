"""Workloads: the training functions trials run. Built-in ones, or ``package.module:function``."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from orchestrator.context import TrialContext
from orchestrator.errors import SpecError

Workload = Callable[[dict[str, Any], TrialContext], Any]

_BUILTIN = {
    "digits_mlp": "orchestrator.workloads.digits:train_mlp",
    "digits_cnn": "orchestrator.workloads.digits:train_cnn",
    "lcbench": "orchestrator.workloads.lcbench:train",
}


def resolve_workload(name: str) -> Workload:
    """Import the workload function ``name`` names; :class:`SpecError` if it cannot be found."""
    target = _BUILTIN.get(name, name)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise SpecError(
            "workload",
            name,
            "a module that can be imported on the driver and the workers",
            f"Importing {module_name!r} failed with {type(exc).__name__}: {exc}. "
            "Install the package or add its folder to PYTHONPATH.",
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpecError("workload", name, f"a callable named {attr!r} in module {module_name!r}")
    return fn
