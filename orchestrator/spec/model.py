"""The validated study: :class:`StudySpec` and its parts, with the defaults a laptop runs with.

Build one with :func:`orchestrator.spec.load_spec` (a YAML file) or
:func:`orchestrator.spec.spec_from_mapping`; ``docs/spec.md`` is the field reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from orchestrator.spec.components import Choice

if TYPE_CHECKING:
    from orchestrator.workloads.script import ScriptWorkload
    from search_spaces import SearchSpace

DEFAULT_STORAGE = "sqlite:///stepsize.db"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_RESULTS_DIR = "~/stepsize_results"
DEFAULT_WORKLOAD = "digits_cnn"
DEFAULT_SAMPLER = "tpe"
DEFAULT_SCHEDULER = "asha"
#: How long the driver retries an unreachable Optuna storage before it gives up (seconds).
DEFAULT_STORAGE_PATIENCE_S = 300.0


def _default_sampler() -> Choice:
    from orchestrator.study.samplers import SAMPLERS

    return Choice(DEFAULT_SAMPLER, dict(SAMPLERS[DEFAULT_SAMPLER].defaults))


def _default_scheduler() -> Choice:
    from orchestrator.run.schedulers import SCHEDULERS

    component = SCHEDULERS[DEFAULT_SCHEDULER]
    options = dict(component.defaults)
    component.check(options, space=None, budget=Budget())  # fills the defaults that follow the budget
    return Choice(DEFAULT_SCHEDULER, options)


@dataclass(frozen=True)
class Budget:
    """What a study may spend. ``trials``: trials in all; ``max_epochs``: epochs per trial;
    ``time_limit_s``: seconds of one run; ``epochs``: epochs trained over all trials (every epoch a
    trial trains counts, retried ones included; None: no epoch budget). Whichever of ``trials`` and
    ``epochs`` is reached first ends the study. ``trials_from_epochs``: the study file gave no
    ``trials``, so ``trials`` is ``epochs`` (each trial trains at least one epoch) and follows it
    when the epoch budget is raised."""

    trials: int = 20
    max_epochs: int = 20
    time_limit_s: float | None = None
    epochs: int | None = None
    trials_from_epochs: bool = False


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
class Limits:
    """Per-trial limits, enforced inside the trial's worker (``orchestrator.trial.limits``).

    ``trial_time_s``: wall-clock seconds a trial may run (None: no limit). Memory: the resident
    memory of the trial's worker process and its children, either ``trial_memory_bytes`` or
    ``trial_memory_fraction`` of the node's RAM (both None: no limit). Default: 80% of the node's
    RAM, so one runaway trial cannot take the machine down, and no time limit.
    """

    trial_time_s: float | None = None
    trial_memory_bytes: int | None = None
    trial_memory_fraction: float | None = 0.8

    @property
    def any(self) -> bool:
        return self.trial_time_s is not None or self.trial_memory_bytes is not None or self.trial_memory_fraction is not None

    @property
    def reuse_workers(self) -> bool:
        """Whether worker processes may serve several trials: not when the study asked for a limit
        of its own (a trial stuck in C code can then only be ended with its process)."""
        return self.trial_time_s is None and self.trial_memory_bytes is None

    def to_dict(self) -> dict[str, Any]:
        memory: Any = None
        if self.trial_memory_bytes is not None:
            memory = self.trial_memory_bytes
        elif self.trial_memory_fraction is not None:
            memory = f"{self.trial_memory_fraction * 100:g}%"
        return {"trial_time": self.trial_time_s, "trial_memory": memory}


@dataclass(frozen=True)
class LRScaling:
    """LR-batch-size coupling: the searched LR is the base LR at ``reference_batch_size``; the
    effective LR is base x f(batch_size / reference), f = 1, identity or square root."""

    rule: str = "none"
    reference_batch_size: int = 256


@dataclass(frozen=True)
class StudySpec:
    """A validated study. Build one with :func:`~orchestrator.spec.load_spec` or
    :func:`~orchestrator.spec.spec_from_mapping`."""

    name: str
    workload: "str | ScriptWorkload" = DEFAULT_WORKLOAD
    workload_options: dict[str, Any] = field(default_factory=dict)
    search_space: "SearchSpace" = field(default=None)  # type: ignore[assignment]
    objective: Objective = Objective()
    sampler: Choice = field(default_factory=_default_sampler)
    scheduler: Choice = field(default_factory=_default_scheduler)
    budget: Budget = Budget()
    concurrency: int | None = None
    resources: Resources = Resources()
    divergence: Divergence = Divergence()
    failures: Failures = Failures()
    lr_scaling: LRScaling = LRScaling()
    limits: Limits = Limits()
    lr_bounds: str = "declared"
    storage: str = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI
    address: str | None = None
    results_dir: str = DEFAULT_RESULTS_DIR
    seed: int = 0
    storage_patience_s: float = DEFAULT_STORAGE_PATIENCE_S

    def to_dict(self, urls: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        """A plain, YAML-serialisable form that :func:`~orchestrator.spec.spec_from_mapping` reads
        back; ``urls`` rewrites the fields that hold URLs (:data:`URL_FIELDS`), e.g. to hide a
        password (see :mod:`orchestrator.credentials`)."""
        data = {
            "name": self.name,
            "workload": self.workload if isinstance(self.workload, str) else self.workload.to_dict(),
            "workload_options": dict(self.workload_options),
            "search_space": self.search_space.to_mapping(),
            "objective": dataclasses.asdict(self.objective),
            "sampler": {"name": self.sampler.name, **self.sampler.options},
            "scheduler": {"name": self.scheduler.name, **self.scheduler.options},
            "budget": {
                "trials": None if self.budget.trials_from_epochs else self.budget.trials,
                "max_epochs": self.budget.max_epochs,
                **({"epochs": self.budget.epochs} if self.budget.epochs is not None else {}),
                "time_limit": self.budget.time_limit_s,
            },
            "concurrency": "auto" if self.concurrency is None else self.concurrency,
            "resources": dataclasses.asdict(self.resources),
            "divergence": dataclasses.asdict(self.divergence),
            "failures": dataclasses.asdict(self.failures),
            "lr_scaling": dataclasses.asdict(self.lr_scaling),
            "limits": self.limits.to_dict(),
            "lr_bounds": self.lr_bounds,
            "storage": self.storage,
            "tracking_uri": self.tracking_uri,
            "address": self.address,
            "results_dir": self.results_dir,
            "seed": self.seed,
            "storage_patience": f"{self.storage_patience_s:g}s",
        }
        for key in URL_FIELDS if urls is not None else ():
            data[key] = urls(data[key])
        return data

    def to_stored_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` as stepsize keeps it (in the study's attributes): URLs without a
        written-out password (``${NAME}`` references stay; see :mod:`orchestrator.credentials`)."""
        from orchestrator.credentials import for_storing

        return self.to_dict(urls=for_storing)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


#: The fields that hold URLs that may carry credentials (a Ray address cannot: HOST:PORT).
URL_FIELDS = ("storage", "tracking_uri")
#: The study file's top-level fields.
TOP_LEVEL_FIELDS = frozenset(f.name for f in dataclasses.fields(StudySpec)) - {"storage_patience_s"} | {"storage_patience"}
#: Overrides (command line, API keywords) that live inside ``budget``.
BUDGET_OVERRIDES = ("trials", "max_epochs", "epochs")


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a study file's mapping) with ``overrides`` applied: ``trials``, ``max_epochs`` and
    ``epochs`` go into ``budget``, the rest replace top-level fields; None means keep."""
    out = dict(data)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in BUDGET_OVERRIDES:
            budget = out.get("budget")
            out["budget"] = {**(budget if isinstance(budget, Mapping) else {}), key: value}
        else:
            out[key] = value
    return out
