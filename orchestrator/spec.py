"""The study spec: a YAML file validated into a :class:`StudySpec` before anything starts.

Every field has a default that works on a laptop; see ``docs/spec.md`` for the reference. A bad
field raises :class:`~orchestrator.errors.SpecError` naming the field, the value and what is
accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from orchestrator.errors import SpecError
from search_spaces import SearchSpace, SpaceError, available_presets, preset_mapping

SAMPLERS = ("tpe", "gp", "random", "grid", "qmc")
SCHEDULERS = ("asha", "hyperband", "median", "none")
BUILTIN_WORKLOADS = ("digits_mlp", "digits_cnn", "lcbench")
DEFAULT_STORAGE = "sqlite:///stepsize.db"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_RESULTS_DIR = "~/stepsize_results"
DEFAULT_GRACE_PERIOD = 3  # ASHA's first rung, in epochs, when the spec gives none
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_WORKLOAD_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
_TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "http", "https", "file", "databricks")
_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")

_SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {
    # multivariate False: independent TPE explores more under ASHA (docs/search_quality.md).
    "tpe": {"n_startup_trials": 10, "multivariate": False, "constant_liar": True, "n_ei_candidates": 24},
    "gp": {"n_startup_trials": 10},
    "random": {},
    "grid": {"points": 8},
    "qmc": {"qmc_type": "sobol", "scramble": True},
}
_SCHEDULER_OPTIONS: dict[str, dict[str, Any]] = {
    # grace_period None: 3 epochs, capped at max_epochs (docs/search_quality.md has the evidence).
    "asha": {"grace_period": None, "reduction_factor": 3, "max_epochs": None, "brackets": 1},
    "hyperband": {"reduction_factor": 3, "max_epochs": None},
    "median": {"grace_period": 3, "min_samples_required": 3},
    "none": {},
}


@dataclass(frozen=True)
class Choice:
    """A named component (sampler or scheduler) with its options, defaults filled in."""

    name: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Budget:
    trials: int = 20
    max_epochs: int = 20
    time_limit_s: float | None = None


@dataclass(frozen=True)
class Objective:
    metric: str = "val_loss"
    mode: str = "min"

    @property
    def direction(self) -> str:
        return "minimize" if self.mode == "min" else "maximize"


@dataclass(frozen=True)
class Resources:
    """Per trial. With ``workers`` > 1 the trial is a data-parallel (DDP) job of that many
    processes, and ``cpus`` and ``gpu`` are split evenly among them."""

    cpus: float = 1.0
    gpu: float = 0.0
    workers: int = 1


@dataclass(frozen=True)
class Divergence:
    """When a trial counts as diverged: NaN/inf, or a loss above ``loss_factor`` x the first
    epoch's (None: NaN/inf only)."""

    loss_factor: float | None = 4.0


@dataclass(frozen=True)
class Failures:
    """How trials that break are handled. A trial whose worker process or node died is retried
    from its last checkpoint up to ``max_retries`` times; a trial whose workload raised is told
    FAIL with the error at once, unless ``retry_errors`` retries those too."""

    max_retries: int = 2
    retry_errors: bool = False


@dataclass(frozen=True)
class LRScaling:
    """LR-batch-size coupling: the searched LR is the base LR at ``reference_batch_size``; the
    effective LR is base x f(batch_size / reference), f = 1, identity or square root."""

    rule: str = "none"
    reference_batch_size: int = 256


@dataclass(frozen=True)
class StudySpec:
    """A validated study. Build one with :func:`load_spec` or :func:`spec_from_mapping`."""

    name: str
    workload: str = "digits_cnn"
    workload_options: dict[str, Any] = field(default_factory=dict)
    search_space: SearchSpace = field(default=None)  # type: ignore[assignment]
    objective: Objective = Objective()
    sampler: Choice = Choice("tpe", dict(_SAMPLER_OPTIONS["tpe"]))
    scheduler: Choice = Choice("asha", dict(_SCHEDULER_OPTIONS["asha"]))
    budget: Budget = Budget()
    concurrency: int | None = None
    resources: Resources = Resources()
    divergence: Divergence = Divergence()
    failures: Failures = Failures()
    lr_scaling: LRScaling = LRScaling()
    lr_bounds: str = "declared"
    storage: str = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI
    address: str | None = None
    results_dir: str = DEFAULT_RESULTS_DIR
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-serialisable form that :func:`spec_from_mapping` reads back."""
        return {
            "name": self.name,
            "workload": self.workload,
            "workload_options": dict(self.workload_options),
            "search_space": self.search_space.to_mapping(),
            "objective": dataclasses.asdict(self.objective),
            "sampler": {"name": self.sampler.name, **self.sampler.options},
            "scheduler": {"name": self.scheduler.name, **self.scheduler.options},
            "budget": {
                "trials": self.budget.trials,
                "max_epochs": self.budget.max_epochs,
                "time_limit": self.budget.time_limit_s,
            },
            "concurrency": "auto" if self.concurrency is None else self.concurrency,
            "resources": dataclasses.asdict(self.resources),
            "divergence": dataclasses.asdict(self.divergence),
            "failures": dataclasses.asdict(self.failures),
            "lr_scaling": dataclasses.asdict(self.lr_scaling),
            "lr_bounds": self.lr_bounds,
            "storage": self.storage,
            "tracking_uri": self.tracking_uri,
            "address": self.address,
            "results_dir": self.results_dir,
            "seed": self.seed,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_overrides(self, **overrides: Any) -> "StudySpec":
        """A copy with command-line overrides applied and validated (None means keep)."""
        data = self.to_dict()
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "trials":
                data["budget"]["trials"] = value
            elif key == "max_epochs":
                data["budget"]["max_epochs"] = value
            else:
                data[key] = value
        return spec_from_mapping(data)


_TOP_LEVEL = {f.name for f in dataclasses.fields(StudySpec)}


def load_spec(path: str | os.PathLike[str], **overrides: Any) -> StudySpec:
    """Read and validate a study file; overrides (``trials``, ``seed``, ...) win over the file."""
    file = Path(path)
    if not file.is_file():
        raise SpecError("study file", str(path), "the path of an existing YAML study file")
    try:
        data = yaml.safe_load(file.read_text()) or {}
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
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("trials", "max_epochs"):
            budget = data.get("budget")
            data["budget"] = {**(budget if isinstance(budget, Mapping) else {}), key: value}
        else:
            data[key] = value
    return spec_from_mapping(data)


def _name_from_path(file: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", file.stem).lstrip("-_.")
    return stem or "study"


def spec_from_mapping(data: Mapping[str, Any]) -> StudySpec:
    """Validate a mapping (the parsed YAML) into a :class:`StudySpec`."""
    if not isinstance(data, Mapping):
        raise SpecError("study", data, "a mapping of fields")
    _reject_unknown(data, _TOP_LEVEL, "")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SpecError("name", name, "1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
    workload = _workload(data.get("workload", "digits_cnn"))
    workload_options = data.get("workload_options") or {}
    if not isinstance(workload_options, Mapping):
        raise SpecError("workload_options", workload_options, "a mapping of options passed to the workload")
    space = _search_space(data.get("search_space", "default"))
    budget = _budget(data.get("budget") or {})
    objective = _objective(data.get("objective") or {})
    sampler = _choice(data.get("sampler", "tpe"), "sampler", _SAMPLER_OPTIONS)
    _check_sampler(sampler, space)
    scheduler = _choice(data.get("scheduler", "asha"), "scheduler", _SCHEDULER_OPTIONS)
    _check_scheduler(scheduler, budget)
    resources = _resources(data.get("resources") or {})
    seed = data.get("seed", 0)
    if not _is_int(seed) or seed < 0:
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
        lr_bounds=_lr_bounds(data.get("lr_bounds", "declared"), space),
        storage=_url(data.get("storage", DEFAULT_STORAGE), "storage", _STORAGE_SCHEMES, "sqlite:///stepsize.db or postgresql+psycopg://user:pass@host/db"),
        tracking_uri=_url(data.get("tracking_uri", DEFAULT_TRACKING_URI), "tracking_uri", _TRACKING_SCHEMES, "sqlite:///mlflow.db or http://127.0.0.1:5000"),
        address=_address(data.get("address")),
        results_dir=_results_dir(data.get("results_dir", DEFAULT_RESULTS_DIR)),
        seed=int(seed),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"Did you mean `{where}{close[0]}`?" if close else None
            raise SpecError(f"{where}{key}", data[key], f"one of the fields {', '.join(sorted(allowed))}", hint)


def _workload(value: Any) -> str:
    accepted = f"a built-in workload ({', '.join(BUILTIN_WORKLOADS)}) or 'package.module:function'"
    if not isinstance(value, str) or not (value in BUILTIN_WORKLOADS or _WORKLOAD_RE.match(value)):
        raise SpecError("workload", value, accepted)
    return value


def _search_space(value: Any) -> SearchSpace:
    try:
        if isinstance(value, str):
            return SearchSpace.from_mapping(preset_mapping(value), where=f"search_space (preset {value})")
        if isinstance(value, Mapping):
            return SearchSpace.from_mapping(value)
    except SpaceError as exc:
        raise SpecError(exc.field, exc.value, exc.accepted, exc.hint) from None
    raise SpecError("search_space", value, f"a preset name ({', '.join(available_presets())}) or an inline mapping")


def _budget(value: Any) -> Budget:
    if not isinstance(value, Mapping):
        raise SpecError("budget", value, "a mapping with trials, max_epochs and optionally time_limit")
    _reject_unknown(value, {"trials", "max_epochs", "time_limit"}, "budget.")
    trials = value.get("trials", Budget.trials)
    if not _is_int(trials) or not 1 <= trials <= 1_000_000:
        raise SpecError("budget.trials", trials, "an integer from 1 to 1000000")
    max_epochs = value.get("max_epochs", Budget.max_epochs)
    if not _is_int(max_epochs) or not 1 <= max_epochs <= 100_000:
        raise SpecError("budget.max_epochs", max_epochs, "an integer from 1 to 100000")
    return Budget(trials, max_epochs, _duration(value.get("time_limit")))


def _duration(value: Any) -> float | None:
    if value is None:
        return None
    accepted = "a number of seconds above 0, or a duration such as '90s', '30m', '2h' or '1h30m'"
    if _is_number(value):
        if value <= 0:
            raise SpecError("budget.time_limit", value, accepted)
        return float(value)
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise SpecError("budget.time_limit", value, accepted)
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise SpecError("budget.time_limit", value, accepted)
    return float(total)


def _objective(value: Any) -> Objective:
    if not isinstance(value, Mapping):
        raise SpecError("objective", value, "a mapping with metric and mode")
    _reject_unknown(value, {"metric", "mode"}, "objective.")
    metric = value.get("metric", Objective.metric)
    if not isinstance(metric, str) or not re.match(r"^[A-Za-z_][\w./-]*$", metric):
        raise SpecError("objective.metric", metric, "the name of a metric the workload reports, e.g. val_loss or val_accuracy")
    mode = value.get("mode", "max" if "acc" in metric else "min")
    if mode not in ("min", "max"):
        raise SpecError("objective.mode", mode, "min or max")
    return Objective(metric, mode)


def _choice(value: Any, where: str, catalogue: Mapping[str, Mapping[str, Any]]) -> Choice:
    names = ", ".join(catalogue)
    shorthand = isinstance(value, str)
    if shorthand:
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise SpecError(where, value, f"a name ({names}) or a mapping with name and options")
    name = value.get("name")
    if name not in catalogue:
        close = difflib.get_close_matches(str(name), list(catalogue), n=1)
        raise SpecError(where if shorthand else f"{where}.name", name, f"one of {names}",
                        f"Did you mean {close[0]!r}?" if close else None)
    defaults = catalogue[name]
    _reject_unknown({k: v for k, v in value.items() if k != "name"}, set(defaults), f"{where}.")
    options = {**defaults, **{k: v for k, v in value.items() if k != "name"}}
    for key, default in defaults.items():
        given = options[key]
        if isinstance(default, bool):
            if not isinstance(given, bool):
                raise SpecError(f"{where}.{key}", given, "true or false")
        elif isinstance(default, int) or default is None:
            if given is not None and (not _is_number(given) or given < 1):
                raise SpecError(f"{where}.{key}", given, "a number of at least 1")
        elif isinstance(default, str) and not isinstance(given, str):
            raise SpecError(f"{where}.{key}", given, "a string")
    return Choice(name, options)


def _check_sampler(sampler: Choice, space: SearchSpace) -> None:
    opts = sampler.options
    for key in ("n_startup_trials", "n_ei_candidates", "points"):
        if key in opts and not _is_int(opts[key]):
            raise SpecError(f"sampler.{key}", opts[key], "a whole number of at least 1")
    if sampler.name == "grid":
        if space.is_conditional:
            raise SpecError("sampler.name", "grid", "a sampler other than grid for a conditional search space (one with `when:`)",
                            "Use tpe or random, or drop the conditions.")
        if opts["points"] < 2:
            raise SpecError("sampler.points", opts["points"], "at least 2 grid points per continuous parameter")
    if sampler.name == "qmc" and opts["qmc_type"] not in ("sobol", "halton", "lhs"):
        raise SpecError("sampler.qmc_type", opts["qmc_type"], "sobol, halton or lhs")


def _check_scheduler(scheduler: Choice, budget: Budget) -> None:
    opts = scheduler.options
    max_epochs = opts.get("max_epochs")
    if "max_epochs" in opts:
        if max_epochs is None:
            opts["max_epochs"] = budget.max_epochs
        elif not _is_int(max_epochs) or max_epochs > budget.max_epochs:
            raise SpecError("scheduler.max_epochs", max_epochs, f"a whole number from 1 to budget.max_epochs ({budget.max_epochs})")
    if "grace_period" in opts and opts["grace_period"] is None:
        opts["grace_period"] = min(DEFAULT_GRACE_PERIOD, opts.get("max_epochs") or budget.max_epochs)
    for key in ("grace_period", "brackets", "min_samples_required"):
        if key in opts and not _is_int(opts[key]):
            raise SpecError(f"scheduler.{key}", opts[key], "a whole number of at least 1")
    if "grace_period" in opts and opts["grace_period"] > opts.get("max_epochs", budget.max_epochs):
        raise SpecError("scheduler.grace_period", opts["grace_period"],
                        f"a number of epochs not above the maximum ({opts.get('max_epochs', budget.max_epochs)})")
    if "reduction_factor" in opts and opts["reduction_factor"] <= 1:
        raise SpecError("scheduler.reduction_factor", opts["reduction_factor"], "a number above 1 (2, 3 or 4 are usual)")


def _divergence(value: Any) -> Divergence:
    if not isinstance(value, Mapping):
        raise SpecError("divergence", value, "a mapping with loss_factor")
    _reject_unknown(value, {"loss_factor"}, "divergence.")
    factor = value.get("loss_factor", Divergence.loss_factor)
    if factor is not None and (not _is_number(factor) or factor <= 1):
        raise SpecError("divergence.loss_factor", factor, "a number above 1 (a loss this many times the first epoch's stops the trial), or null for NaN/inf only")
    return Divergence(None if factor is None else float(factor))


def _failures(value: Any) -> Failures:
    if not isinstance(value, Mapping):
        raise SpecError("failures", value, "a mapping with max_retries and retry_errors")
    _reject_unknown(value, {"max_retries", "retry_errors"}, "failures.")
    retries = value.get("max_retries", Failures.max_retries)
    if not _is_int(retries) or not 0 <= retries <= 100:
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
    _reject_unknown(value, {"rule", "reference_batch_size"}, "lr_scaling.")
    rule = value.get("rule", "none")
    if rule not in ("none", "linear", "sqrt"):
        raise SpecError("lr_scaling.rule", rule, "none, linear or sqrt")
    reference = value.get("reference_batch_size", LRScaling.reference_batch_size)
    if not _is_int(reference) or reference < 1:
        raise SpecError("lr_scaling.reference_batch_size", reference, "a batch size of at least 1")
    if rule != "none" and space.get("learning_rate") is None:
        raise SpecError("lr_scaling.rule", rule, "none when the search space has no learning_rate")
    return LRScaling(rule, reference)


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
    if not _is_int(value) or value < 1:
        raise SpecError("concurrency", value, "'auto' (as many trials as the CPUs and GPUs allow) or an integer of at least 1")
    return value


def _resources(value: Any) -> Resources:
    if not isinstance(value, Mapping):
        raise SpecError("resources", value, "a mapping with cpus, gpu and workers")
    _reject_unknown(value, {"cpus", "gpu", "workers"}, "resources.")
    cpus = value.get("cpus", 1)
    if not _is_number(cpus) or cpus <= 0 or cpus > 1024:
        raise SpecError("resources.cpus", cpus, "a number of CPUs per trial above 0 (fractions allowed), e.g. 1")
    gpu = value.get("gpu", 0)
    if not _is_number(gpu) or gpu < 0 or gpu > 64 or (gpu > 1 and not float(gpu).is_integer()):
        raise SpecError("resources.gpu", gpu, "0, a fraction of one GPU (0.25, 0.5) or a whole number of GPUs")
    workers = value.get("workers", 1)
    if not _is_int(workers) or not 1 <= workers <= 1024:
        raise SpecError("resources.workers", workers,
                        "a whole number of training processes per trial, from 1 (a plain trial) to 1024 (a DDP job)")
    if workers > 1 and gpu > 0 and (gpu < workers or not float(gpu / workers).is_integer()):
        raise SpecError("resources.gpu", gpu, f"0 or a whole number of GPUs for each of the {workers} workers "
                        f"({workers}, {2 * workers}, ...): DDP processes cannot share a GPU",
                        f"Use gpu: {workers} for one GPU per worker, or workers: 1 to pack trials with a fraction of a GPU.")
    return Resources(float(cpus), float(gpu), int(workers))


def _url(value: Any, where: str, schemes: tuple[str, ...], example: str) -> str:
    if not isinstance(value, str) or "://" not in value and not value.startswith("databricks"):
        raise SpecError(where, value, f"a URL such as {example}")
    scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in schemes:
        raise SpecError(where, value, f"a URL with one of the schemes {', '.join(schemes)} (e.g. {example})")
    if scheme == "sqlite":
        if not value.startswith("sqlite:///") or len(value) <= len("sqlite:///"):
            raise SpecError(where, value, "sqlite:///relative/path.db or sqlite:////absolute/path.db")
        folder = Path(os.path.expanduser(value[len("sqlite:///"):])).parent
        if not folder.is_dir():
            raise SpecError(where, value, f"a SQLite file in an existing folder ({folder} does not exist)")
    return value


def _address(value: Any) -> str | None:
    if value in (None, "", "local"):
        return None
    if not isinstance(value, str) or not (value == "auto" or re.match(r"^(ray://)?[\w.-]+:\d{1,5}$", value)):
        raise SpecError("address", value, "null (start Ray on this machine), 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    return value


def _results_dir(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError("results_dir", value, "a folder path (or URI such as s3://bucket/path) for Ray's trial state")
    return value
