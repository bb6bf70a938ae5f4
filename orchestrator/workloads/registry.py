"""The one registry of built-in workloads, and how a workload name becomes a function.

A workload is ``fn(config, trial)``: a built-in name (:data:`BUILTIN_WORKLOADS`) or
``package.module:function``. The LR range test needs a setup beside it: for a user workload,
``package.module:function_lr_range_setup``; the built-ins name theirs here. Importing this module
imports nothing heavy; the workload's own module is imported when it is resolved.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator.errors import LRRangeSetupMissing, SpecError
from orchestrator.workloads.script import ScriptWorkload

SETUP_SUFFIX = "_lr_range_setup"


@dataclass(frozen=True)
class Builtin:
    """A built-in workload: its training function and (if any) its LR range test setup, as
    ``module:function`` paths."""

    train: str
    lr_range_setup: str | None = None


_BUILTIN: dict[str, Builtin] = {
    "digits_mlp": Builtin("orchestrator.workloads.digits:train_mlp",
                          "orchestrator.workloads.digits:digits_mlp_lr_range_setup"),
    "digits_cnn": Builtin("orchestrator.workloads.digits:train_cnn",
                          "orchestrator.workloads.digits:digits_cnn_lr_range_setup"),
    "lcbench": Builtin("orchestrator.workloads.lcbench:train"),
}
BUILTIN_WORKLOADS: tuple[str, ...] = tuple(_BUILTIN)


def resolve_workload(name: "str | ScriptWorkload") -> Callable[..., Any]:
    """Import the workload function ``name`` names; :class:`SpecError` if it cannot be found.
    A script workload is its own function (it runs the script), once its script is here."""
    if isinstance(name, ScriptWorkload):
        name.check_on_this_machine()
        return name
    target = _BUILTIN[name].train if name in _BUILTIN else name
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
    check_signature(fn, name)
    return fn


def check_signature(fn: Callable[..., Any], name: str) -> None:
    """:class:`SpecError` unless ``fn`` can be called as ``fn(config, trial)`` (what every trial
    does), so a wrong signature is refused before Ray starts rather than failing every trial."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to read, the trial will tell
    try:
        signature.bind({}, None)
    except TypeError as exc:
        raise SpecError(
            "workload",
            name,
            "a function called as fn(config, trial) with two positional arguments: the trial's "
            "configuration (a dict) and its context (report each epoch with trial.report(...))",
            f"{getattr(fn, '__qualname__', name)}{signature} cannot be called that way ({exc}). "
            "Write it as `def train(config, trial):` (see the README's section 'Your own training function').",
        ) from None
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        kind = "a coroutine" if inspect.iscoroutinefunction(fn) else "a generator"
        raise SpecError("workload", name, "a plain function called as fn(config, trial)",
                        f"{getattr(fn, '__qualname__', name)} is {kind} function; trials call it and never "
                        "iterate or await it. Make it a plain `def` that calls trial.report(...) each epoch.")


def resolve_lr_range_setup(workload_name: "str | ScriptWorkload") -> Callable[..., Any]:
    """The LR range test setup for ``workload_name``: the built-in one, or for
    ``package.module:function`` the module's ``function_lr_range_setup``.

    Raises:
        SpecError: the name is neither a built-in nor ``package.module:function``.
        LRRangeSetupMissing: the workload has no such setup function.
    """
    if isinstance(workload_name, ScriptWorkload):
        raise LRRangeSetupMissing(f"the workload is a training script ({workload_name}); the LR range test "
                                  "needs a function workload with a `<function>_lr_range_setup` (docs/lr_range_test.md)")
    builtin = _BUILTIN.get(workload_name)
    if builtin is not None:
        if builtin.lr_range_setup is None:
            raise LRRangeSetupMissing(f"the built-in workload {workload_name!r} has no LR range test setup")
        module_name, _, attr = builtin.lr_range_setup.partition(":")
        return getattr(importlib.import_module(module_name), attr)
    module_name, sep, fn_name = workload_name.partition(":")
    if not sep or not module_name or not fn_name:
        raise SpecError("workload", workload_name,
                        f"a built-in ({', '.join(sorted(BUILTIN_WORKLOADS))}) or package.module:function")
    module = importlib.import_module(module_name)
    setup_name = fn_name + SETUP_SUFFIX
    setup = getattr(module, setup_name, None)
    if not callable(setup):
        raise LRRangeSetupMissing(
            f"workload {workload_name!r} has no LR range test setup: define {setup_name}(config, options, seed) "
            f"-> (model, loss_fn, batches) in module {module_name!r}, returning a fresh model, its loss function "
            "and one epoch of (inputs, targets) batches at config['batch_size'] (see docs/lr_range_test.md)"
        )
    return setup
