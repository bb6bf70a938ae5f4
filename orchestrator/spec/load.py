"""Reading and validating a study file into a :class:`~orchestrator.spec.model.StudySpec`.

Nothing is created in any store here: every field is checked first, and a bad one raises
:class:`~orchestrator.errors.SpecError` naming the field, the value and what is accepted. The
sampler and scheduler options are checked by the components themselves
(``orchestrator.study.samplers``, ``orchestrator.run.schedulers``) through
:func:`~orchestrator.spec.components.parse_choice`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from orchestrator.errors import SpecError
from orchestrator.spec.checks import duration, is_int, is_number, reject_unknown, url
from orchestrator.spec.components import parse_choice
from orchestrator.spec.model import (
    DEFAULT_RESULTS_DIR,
    DEFAULT_SAMPLER,
    DEFAULT_SCHEDULER,
    DEFAULT_STORAGE,
    DEFAULT_STORAGE_PATIENCE_S,
    DEFAULT_TRACKING_URI,
    DEFAULT_WORKLOAD,
    TOP_LEVEL_FIELDS,
    Budget,
    Divergence,
    Failures,
    Limits,
    LRScaling,
    Objective,
    Resources,
    StudySpec,
    apply_overrides,
)
from orchestrator.spec.yaml_source import load_yaml
from orchestrator.workloads.registry import BUILTIN_WORKLOADS
from orchestrator.workloads.script import ScriptWorkload, parse_script_workload
from search_spaces import SearchSpace, available_presets, preset_mapping

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_WORKLOAD_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
_TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "http", "https", "file", "databricks")


def load_spec(path: str | os.PathLike[str], **overrides: Any) -> StudySpec:
    """Read and validate a study file; overrides (``trials``, ``seed``, ...) win over the file."""
    file = Path(path)
    if not file.is_file():
        raise SpecError("study file", str(path), "the path of an existing YAML study file")
    try:
        data = load_yaml(file.read_text(), str(path)) or {}  # an alias bomb is refused before it expands
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("study file", str(path), f"valid YAML (parse error{where}: {problem})") from None
    except UnicodeDecodeError:
        raise SpecError("study file", str(path), "a UTF-8 text file") from None
    if not isinstance(data, Mapping):
        raise SpecError("study file", str(path), "a YAML mapping of fields (name:, workload:, ...) at the top level")
    data = dict(data)
    data.setdefault("name", _name_from_path(file))
    return spec_from_mapping(apply_overrides(data, overrides), base_dir=file.parent)


def with_overrides(spec: StudySpec, **overrides: Any) -> StudySpec:
    """A copy of ``spec`` with overrides applied and validated (None means keep)."""
    return spec_from_mapping(apply_overrides(spec.to_dict(), overrides))


def _name_from_path(file: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", file.stem).lstrip("-_.")
    return stem or "study"


def spec_from_mapping(data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> StudySpec:
    """Validate a mapping (the parsed YAML) into a :class:`StudySpec`; a script workload's
    relative paths are taken from ``base_dir`` (the study file's folder; default the current one)."""
    from orchestrator.run.schedulers import SCHEDULERS
    from orchestrator.study.samplers import SAMPLERS

    if not isinstance(data, Mapping):
        raise SpecError("study", data, "a mapping of fields")
    reject_unknown(data, TOP_LEVEL_FIELDS, "")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SpecError("name", name, "1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
    workload_options = data.get("workload_options") or {}
    if not isinstance(workload_options, Mapping):
        raise SpecError("workload_options", workload_options, "a mapping of options passed to the workload")
    space = _search_space(data.get("search_space", "default"))
    workload = _workload(data.get("workload", DEFAULT_WORKLOAD), base_dir, tuple(param.name for param in space.params))
    budget = _budget(data.get("budget") or {})
    objective = _objective(data.get("objective") or {})
    sampler = parse_choice(data.get("sampler", DEFAULT_SAMPLER), "sampler", SAMPLERS, space=space, budget=budget)
    scheduler = parse_choice(data.get("scheduler", DEFAULT_SCHEDULER), "scheduler", SCHEDULERS, space=space, budget=budget)
    resources = _resources(data.get("resources") or {})
    lr_bounds = _lr_bounds(data.get("lr_bounds", "declared"), space)
    if isinstance(workload, ScriptWorkload):
        _check_script_fits(resources, lr_bounds)
    seed = data.get("seed", 0)
    if not is_int(seed) or seed < 0:
        raise SpecError("seed", seed, "a non-negative integer")
    return StudySpec(
        name=name,
        workload=workload,
        workload_options=dict(workload_options),
        search_space=space,
        objective=objective,
        sampler=sampler,
        scheduler=scheduler,
        budget=budget,
        concurrency=_concurrency(data.get("concurrency", "auto")),
        resources=resources,
        divergence=_divergence(data.get("divergence") or {}),
        failures=_failures(data.get("failures") or {}),
        lr_scaling=_lr_scaling(data.get("lr_scaling") or {}, space),
        limits=_limits(data.get("limits", {})),
        lr_bounds=lr_bounds,
        storage=url(data.get("storage", DEFAULT_STORAGE), "storage", _STORAGE_SCHEMES, "sqlite:///stepsize.db or postgresql+psycopg://user:pass@host/db"),
        tracking_uri=url(data.get("tracking_uri", DEFAULT_TRACKING_URI), "tracking_uri", _TRACKING_SCHEMES, "sqlite:///mlflow.db or http://127.0.0.1:5000"),
        address=_address(data.get("address")),
        results_dir=_results_dir(data.get("results_dir", DEFAULT_RESULTS_DIR)),
        seed=int(seed),
        storage_patience_s=_storage_patience(data.get("storage_patience")),
    )


def _storage_patience(value: Any) -> float:
    """Seconds from ``storage_patience``: a bare number is minutes (``5``), else a duration
    (``90s``, ``5m``, ``1h``); missing: the default (5 minutes)."""
    if value is None:
        return DEFAULT_STORAGE_PATIENCE_S
    if is_number(value) and value > 0:
        return float(value) * 60
    return duration(value, "storage_patience") or DEFAULT_STORAGE_PATIENCE_S


def _workload(value: Any, base_dir: str | os.PathLike[str] | None, names: tuple[str, ...]) -> str | ScriptWorkload:
    if isinstance(value, Mapping):
        return parse_script_workload(value, base_dir, names)
    accepted = (f"a built-in workload ({', '.join(BUILTIN_WORKLOADS)}), 'package.module:function', or a "
                "training script: {script: train.py} (see docs/scripts.md)")
    if not isinstance(value, str) or not (value in BUILTIN_WORKLOADS or _WORKLOAD_RE.match(value)):
        raise SpecError("workload", value, accepted)
    return value


def _check_script_fits(resources: Resources, lr_bounds: str) -> None:
    """What a script workload cannot do, refused before anything starts."""
    if resources.workers > 1:
        raise SpecError("resources.workers", resources.workers, "1 with a script workload",
                        "A script runs as one process per trial; for multi-process training start torchrun "
                        "from the script, or write the workload as a function (resources.workers in docs/cluster.md).")
    if lr_bounds == "auto":
        raise SpecError("lr_bounds", "auto", "'declared' with a script workload",
                        "The LR range test trains in the driver's Ray task through a function workload's "
                        "setup; run `stepsize lr-find` on a function workload, or declare the learning_rate range.")


def _search_space(value: Any) -> SearchSpace:
    if isinstance(value, str):
        return SearchSpace.from_mapping(preset_mapping(value), where=f"search_space (preset {value})")
    if isinstance(value, Mapping):
        return SearchSpace.from_mapping(value)
    raise SpecError("search_space", value, f"a preset name ({', '.join(available_presets())}) or an inline mapping")


_MAX_TRIALS = 1_000_000


def _budget(value: Any) -> Budget:
    if not isinstance(value, Mapping):
        raise SpecError("budget", value, "a mapping with trials, max_epochs and optionally epochs and time_limit")
    reject_unknown(value, {"trials", "max_epochs", "epochs", "time_limit"}, "budget.")
    max_epochs = value.get("max_epochs", Budget.max_epochs)
    if not is_int(max_epochs) or not 1 <= max_epochs <= 100_000:
        raise SpecError("budget.max_epochs", max_epochs, "an integer from 1 to 100000")
    epochs = value.get("epochs")
    if epochs is not None and (not is_int(epochs) or epochs < max_epochs):
        raise SpecError("budget.epochs", epochs, f"a whole number of epochs trained over all trials, at least "
                        f"budget.max_epochs ({max_epochs}) so that a trial can train to its end, or null for none")
    # Without a trial count the epoch budget bounds the trials (each trains at least one epoch).
    from_epochs = epochs is not None and value.get("trials") is None
    trials = min(epochs, _MAX_TRIALS) if from_epochs else value.get("trials", Budget.trials)
    if not is_int(trials) or not 1 <= trials <= _MAX_TRIALS:
        raise SpecError("budget.trials", trials, "an integer from 1 to 1000000 (null only beside budget.epochs)")
    return Budget(trials, max_epochs, duration(value.get("time_limit"), "budget.time_limit"), epochs, from_epochs)


def _objective(value: Any) -> Objective:
    if not isinstance(value, Mapping):
        raise SpecError("objective", value, "a mapping with metric and mode")
    reject_unknown(value, {"metric", "mode"}, "objective.")
    metric = value.get("metric", Objective.metric)
    if not isinstance(metric, str) or not re.match(r"^[A-Za-z_][\w./-]*$", metric):
        raise SpecError("objective.metric", metric, "the name of a metric the workload reports, e.g. val_loss or val_accuracy")
    mode = value.get("mode", "max" if "acc" in metric else "min")
    if mode not in ("min", "max"):
        raise SpecError("objective.mode", mode, "min or max")
    return Objective(metric, mode)


def _divergence(value: Any) -> Divergence:
    if not isinstance(value, Mapping):
        raise SpecError("divergence", value, "a mapping with loss_factor")
    reject_unknown(value, {"loss_factor"}, "divergence.")
    factor = value.get("loss_factor", Divergence.loss_factor)
    if factor is not None and (not is_number(factor) or factor <= 1):
        raise SpecError("divergence.loss_factor", factor, "a number above 1 (a loss this many times the first epoch's stops the trial), or null for NaN/inf only")
    return Divergence(None if factor is None else float(factor))


def _failures(value: Any) -> Failures:
    if not isinstance(value, Mapping):
        raise SpecError("failures", value, "a mapping with max_retries and retry_errors")
    reject_unknown(value, {"max_retries", "retry_errors"}, "failures.")
    retries = value.get("max_retries", Failures.max_retries)
    if not is_int(retries) or not 0 <= retries <= 100:
        raise SpecError("failures.max_retries", retries, "an integer from 0 to 100 (retries of a trial whose worker or node died)")
    retry_errors = value.get("retry_errors", Failures.retry_errors)
    if not isinstance(retry_errors, bool):
        raise SpecError("failures.retry_errors", retry_errors, "true or false (retry trials whose workload raised, too)")
    return Failures(int(retries), retry_errors)


def _lr_scaling(value: Any, space: SearchSpace) -> LRScaling:
    if isinstance(value, str):
        value = {"rule": value}
    if not isinstance(value, Mapping):
        raise SpecError("lr_scaling", value, "none, linear or sqrt, or a mapping with rule and reference_batch_size")
    reject_unknown(value, {"rule", "reference_batch_size"}, "lr_scaling.")
    rule = value.get("rule", "none")
    if rule not in ("none", "linear", "sqrt"):
        raise SpecError("lr_scaling.rule", rule, "none, linear or sqrt")
    reference = value.get("reference_batch_size", LRScaling.reference_batch_size)
    if not is_int(reference) or reference < 1:
        raise SpecError("lr_scaling.reference_batch_size", reference, "a batch size of at least 1")
    if rule != "none" and space.get("learning_rate") is None:
        raise SpecError("lr_scaling.rule", rule, "none when the search space has no learning_rate")
    return LRScaling(rule, reference)


_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)\s*$")
_MEMORY_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
                 "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def _limits(value: Any) -> Limits:
    if value is None:
        return Limits(None, None, None)
    if not isinstance(value, Mapping):
        raise SpecError("limits", value, "a mapping with trial_time and trial_memory (each may be null: no limit)")
    reject_unknown(value, {"trial_time", "trial_memory"}, "limits.")
    time_s = duration(value.get("trial_time"), "limits.trial_time")
    memory = value.get("trial_memory", "80%")
    if memory is None:
        return Limits(time_s, None, None)
    accepted = ("a size such as '4GiB' or '512MiB' (resident memory of the trial's processes), a share of "
                "the node's RAM such as '80%', or null for no limit")
    if isinstance(memory, str) and memory.strip().endswith("%"):
        try:
            share = float(memory.strip()[:-1])
        except ValueError:
            raise SpecError("limits.trial_memory", memory, accepted) from None
        if not 0 < share <= 100:
            raise SpecError("limits.trial_memory", memory, "a share of the node's RAM above 0% and at most 100%")
        return Limits(time_s, None, share / 100)
    match = _MEMORY_RE.match(memory) if isinstance(memory, str) else None
    size = int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)]) if match else memory if is_int(memory) else None
    if size is None:
        raise SpecError("limits.trial_memory", memory, accepted)
    if size < 64 * 2**20:
        raise SpecError("limits.trial_memory", memory, "at least 64MiB (a worker process alone takes a few hundred MiB)")
    return Limits(time_s, int(size), None)


def _lr_bounds(value: Any, space: SearchSpace) -> str:
    if value not in ("declared", "auto"):
        raise SpecError("lr_bounds", value, "declared (search the space's learning_rate range as written) or auto (narrow it with an LR range test first)")
    param = space.get("learning_rate")
    if value == "auto" and (param is None or param.kind != "float" or param.when):
        raise SpecError("lr_bounds", value, "declared unless the search space has an unconditional float learning_rate")
    return value


def _concurrency(value: Any) -> int | None:
    if value in (None, "auto"):
        return None
    if not is_int(value) or value < 1:
        raise SpecError("concurrency", value, "'auto' (as many trials as the CPUs and GPUs allow) or an integer of at least 1")
    return value


def _resources(value: Any) -> Resources:
    if not isinstance(value, Mapping):
        raise SpecError("resources", value, "a mapping with cpus, gpu and workers")
    reject_unknown(value, {"cpus", "gpu", "workers"}, "resources.")
    cpus = value.get("cpus", 1)
    if not is_number(cpus) or cpus <= 0 or cpus > 1024:
        raise SpecError("resources.cpus", cpus, "a number of CPUs per trial above 0 (fractions allowed), e.g. 1")
    gpu = value.get("gpu", 0)
    if not is_number(gpu) or gpu < 0 or gpu > 64 or (gpu > 1 and not float(gpu).is_integer()):
        raise SpecError("resources.gpu", gpu, "0, a fraction of one GPU (0.25, 0.5) or a whole number of GPUs")
    workers = value.get("workers", 1)
    if not is_int(workers) or not 1 <= workers <= 1024:
        raise SpecError("resources.workers", workers,
                        "a whole number of training processes per trial, from 1 (a plain trial) to 1024 (a DDP job)")
    if workers > 1 and gpu > 0 and (gpu < workers or not float(gpu / workers).is_integer()):
        raise SpecError("resources.gpu", gpu, f"0 or a whole number of GPUs for each of the {workers} workers "
                        f"({workers}, {2 * workers}, ...): DDP processes cannot share a GPU",
                        f"Use gpu: {workers} for one GPU per worker, or workers: 1 to pack trials with a fraction of a GPU.")
    return Resources(float(cpus), float(gpu), int(workers))


def _address(value: Any) -> str | None:
    if value in (None, "", "local"):
        return None
    accepted = "null (start Ray on this machine), 'auto' or 'HOST:PORT' (the head's GCS address)"
    if isinstance(value, str) and value.startswith("ray://"):
        raise SpecError("address", value, accepted,
                        "A Ray Client address makes Ray Tune run the study's loop on the cluster, away from the "
                        "study's storage, its MLflow record and its progress view, so stepsize joins a cluster "
                        "directly: run stepsize on a node that reaches the head's GCS port (for example on the head, "
                        "over SSH) with --address HOST:6379, or `auto` on a node of the cluster.")
    if not isinstance(value, str) or not (value == "auto" or re.match(r"^[\w.-]+:\d{1,5}$", value)):
        raise SpecError("address", value, accepted)
    return value


def _results_dir(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError("results_dir", value, "a folder path (or URI such as s3://bucket/path) for Ray's trial state")
    return value
