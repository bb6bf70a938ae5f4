"""Per-epoch trial checkpoints: what a trial saves, how it is loaded back, and where a study's are.

A checkpoint is a folder that Ray Tune persists under the study's results folder
(``<results_dir>/<study>/<trial folder>/checkpoint_NNNNNN``). It holds:

- ``stepsize.json``: the Optuna trial number and the epoch the checkpoint was taken after;
- ``state.pt``: the ``state_dict()`` of every object the workload registered with
  ``trial.restore(...)`` (optimizer, LR schedule, data-order generator...) and the process's
  random-number generators (Python, NumPy, torch, CUDA);
- ``model.pt``: the registered ``model`` as a whole module with its weights, so the best trial's
  weights can be logged as an MLflow model without the workload's code (a model that cannot be
  pickled has its ``state_dict()`` in ``state.pt`` instead).

Training code that writes its own checkpoint files (a training script, Lightning, Hugging Face)
reports a folder of them instead; ``stepsize.json`` then says ``"files": true`` and the folder
holds whatever that code wrote (a whole ``model.pt`` among them is logged like the above).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Mapping

from orchestrator.credentials import protected_logger
from orchestrator.errors import CheckpointError

logger = protected_logger("orchestrator.checkpoints")

META_FILE = "stepsize.json"
STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"
_RNG_KEY = "__rng__"
_IN_MODEL_FILE = "__in_model_file__"  # the model's weights are those of model.pt


def local_study_folder(spec: Any) -> Path | None:
    """The study's Ray results folder (``<results_dir>/<study name>``) when ``results_dir`` is on
    this machine's file system; None for a remote URI (``s3://...``)."""
    if "://" in spec.results_dir:
        return None
    return Path(os.path.expanduser(spec.results_dir)).resolve() / spec.name


def write_checkpoint(folder: str | os.PathLike[str], objects: Mapping[str, Any], number: int, epoch: int) -> None:
    """Save ``objects``' states and the process's RNG states into ``folder`` (created)."""
    import torch

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    states: dict[str, Any] = {}
    model = objects.get("model")
    if isinstance(model, torch.nn.Module):
        try:
            torch.save(model, path / MODEL_FILE)  # the weights once, whole: also what MLflow logs
            states["model"] = _IN_MODEL_FILE
        except Exception:  # a model class defined inside a function cannot be pickled
            (path / MODEL_FILE).unlink(missing_ok=True)
    for name, obj in objects.items():
        states.setdefault(name, _state_of(name, obj))
    states[_RNG_KEY] = _rng_states()
    torch.save(states, path / STATE_FILE)
    (path / META_FILE).write_text(json.dumps({"number": int(number), "epoch": int(epoch)}))


def mark_files_checkpoint(folder: str | os.PathLike[str], number: int, epoch: int) -> None:
    """Make ``folder`` (files a workload wrote) a stepsize checkpoint of trial ``number``'s
    ``epoch``; :class:`~orchestrator.errors.CheckpointError` when it is not a folder."""
    path = Path(folder)
    if not path.is_dir():
        raise CheckpointError(f"report(checkpoint_dir={str(folder)!r}): no such folder; write the checkpoint "
                              "files into an existing folder before reporting it")
    (path / META_FILE).write_text(json.dumps({"number": int(number), "epoch": int(epoch), "files": True}))


def read_checkpoint(folder: str | os.PathLike[str], objects: Mapping[str, Any]) -> int:
    """Load ``folder``'s saved states into ``objects`` and restore the RNGs; return its epoch.

    Raises :class:`~orchestrator.errors.CheckpointError` (a ``ValueError``) naming the object when
    the checkpoint lacks one of ``objects``.
    """
    import torch

    path = Path(folder)
    states = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    for name, obj in objects.items():
        if name not in states:
            raise CheckpointError(
                f"the checkpoint in {path} has no state for {name!r} (it holds "
                f"{', '.join(sorted(k for k in states if k != _RNG_KEY)) or 'nothing'}); "
                "register the same objects with trial.restore(...) in every run of the workload"
            )
        state = states[name]
        if isinstance(state, str) and state == _IN_MODEL_FILE:
            state = torch.load(path / MODEL_FILE, map_location="cpu", weights_only=False).state_dict()
        _load_state(obj, state)
    _restore_rng(states.get(_RNG_KEY) or {})
    return int(checkpoint_meta(path)["epoch"])


def checkpoint_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"number": ..., "epoch": ...}`` (and ``"files": true`` for a folder of a workload's own
    files) of a checkpoint folder."""
    return json.loads((Path(folder) / META_FILE).read_text())


def find_checkpoints(study_folder: str | os.PathLike[str]) -> dict[int, list[tuple[int, str]]]:
    """Every checkpoint under a study's results folder: trial number -> [(epoch, folder)], oldest
    first. A folder that is missing or unreadable gives nothing (resume then restarts trials)."""
    found: dict[int, list[tuple[int, str]]] = {}
    root = Path(study_folder)
    if not root.is_dir():
        return found
    for meta in root.glob(f"*/checkpoint_*/{META_FILE}"):
        try:
            info = checkpoint_meta(meta.parent)
        except (OSError, ValueError, KeyError):
            continue
        if info.get("files") or (meta.parent / STATE_FILE).is_file():
            found.setdefault(int(info["number"]), []).append((int(info["epoch"]), str(meta.parent)))
    for entries in found.values():
        entries.sort()
    return found


def latest_checkpoint(entries: list[tuple[int, str]], at_most_epoch: int | None = None) -> tuple[int, str] | None:
    """The newest ``(epoch, folder)`` of ``entries`` taken at or before ``at_most_epoch``."""
    usable = [entry for entry in entries if at_most_epoch is None or entry[0] <= at_most_epoch]
    return usable[-1] if usable else None


def load_model(folder: str | os.PathLike[str]) -> Any | None:
    """The whole model saved in a checkpoint folder, or None when it holds none."""
    import torch

    file = Path(folder) / MODEL_FILE
    if not file.is_file():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # the model's class cannot be imported here
        logger.warning("could not load the model in %s: %s", folder, exc)
        return None


def _state_of(name: str, obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if hasattr(obj, "bit_generator"):  # numpy.random.Generator
        return obj.bit_generator.state
    raise CheckpointError(
        f"trial.restore({name}=...) got a {type(obj).__name__}, which has no state_dict(); register "
        "models, optimizers, LR schedules and random generators (torch or numpy)"
    )


def _load_state(obj: Any, state: Any) -> None:
    import torch

    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    elif hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    else:
        obj.bit_generator.state = state


def _rng_states() -> dict[str, Any]:
    import numpy as np
    import torch

    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    if "python" in states:
        random.setstate(states["python"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
