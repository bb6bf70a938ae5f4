"""The LR range test inside a study: ``stepsize lr-find`` and ``lr_bounds: auto``.

The test runs on the study's workload at the study's batch size (the reference batch size when
``lr_scaling`` is on, since the searched LR is the base LR at that size), and its suggested
bounds narrow the declared ``learning_rate`` range before the search starts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from optuna.distributions import CategoricalDistribution, FloatDistribution

from orchestrator.credentials import for_storing
from orchestrator.errors import LRRangeError, SpecError
from orchestrator.keys import StudyAttr
from orchestrator.lr_range.result import LRRangeResult, epochs_of
from orchestrator.lr_range.workload import run_lr_range_for_workload
from orchestrator.spec import StudySpec
from search_spaces import Param, SearchSpace

DEFAULT_BATCH_SIZE = 64
MIN_SPAN = 3.0  # narrowed bounds must still span at least this factor


def range_test_config(spec: StudySpec, batch_size: int | None = None) -> dict[str, Any]:
    """The configuration the range test trains with: the space's fixed values, the middle choice
    of each categorical, the middle of each numeric range, and the study's batch size."""
    config: dict[str, Any] = {}
    for param in spec.search_space.params:
        if param.name == "learning_rate" or not param.is_active(config):
            continue
        config[param.name] = _typical_value(param)
    if batch_size is not None:
        config["batch_size"] = batch_size
    elif spec.lr_scaling.rule != "none":
        config["batch_size"] = spec.lr_scaling.reference_batch_size
    elif "batch_size" not in config:
        config["batch_size"] = DEFAULT_BATCH_SIZE
    return config


def _typical_value(param: Param) -> Any:
    dist = param.distribution
    if dist is None:
        return param.value
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[(len(dist.choices) - 1) // 2]
    if dist.log:
        middle = (dist.low * dist.high) ** 0.5
    else:
        middle = (dist.low + dist.high) / 2
    return int(round(middle)) if not isinstance(dist, FloatDistribution) else middle


def declared_lr_range(spec: StudySpec) -> tuple[float, float] | None:
    """(low, high) of the space's float ``learning_rate``, or None when there is none."""
    param = spec.search_space.get("learning_rate")
    if param is None or not isinstance(param.distribution, FloatDistribution):
        return None
    return param.distribution.low, param.distribution.high


def find_lr(
    spec: StudySpec,
    *,
    batch_size: int | None = None,
    min_lr: float | None = None,
    max_lr: float | None = None,
    num_steps: int | None = None,
    mode: str = "exponential",
    progress: Callable[[str], None] | None = None,
) -> LRRangeResult:
    """Run the range test for ``spec`` in this process (by default 100 steps, at most 3 epochs).

    The ramp starts at the declared range's low end and ends at 10x its high end, capped at 10
    unless the range itself reaches further (1e-7 to 10 when the space has no learning rate), so
    the divergence edge is in view without spreading the steps too thin. A suggestion outside the
    declared range gets a note naming ``search_space.learning_rate``.
    """
    import torch

    check_lr_find_options(min_lr=min_lr, max_lr=max_lr, num_steps=num_steps, batch_size=batch_size)
    declared = declared_lr_range(spec)
    low = min_lr if min_lr is not None else (declared[0] if declared else 1e-7)
    high = max_lr if max_lr is not None else (max(declared[1], min(declared[1] * 10, 10.0)) if declared else 10.0)
    if low >= high and min_lr is not None:
        raise LRRangeError(
            f"--min-lr {low:g} is not below the ramp's end {high:g} (the default --max-lr: 10x the study's highest "
            "learning_rate, at most 10); the ramp climbs from --min-lr up to --max-lr: pass a --max-lr above it"
        )
    if low >= high:
        raise LRRangeError(
            f"--max-lr {high:g} is not above the ramp's start {low:g} (the default --min-lr: the study's lowest "
            "learning_rate); the ramp climbs from --min-lr up to --max-lr: pass a --min-lr below it"
        )
    torch.set_num_threads(max(1, int(spec.resources.cpus)))
    result = run_lr_range_for_workload(
        spec.workload, range_test_config(spec, batch_size), spec.workload_options, spec.seed,
        min_lr=low, max_lr=high, num_steps=num_steps, mode=mode, progress=progress,
    )
    suggested = result.suggested_lr
    if declared is not None and suggested is not None and not declared[0] <= suggested <= declared[1]:
        side, value = ("low", result.bounds[0]) if suggested < declared[0] else ("high", result.bounds[1])
        result.notes.append(
            f"the suggested learning_rate {suggested:.3g} is outside the study's search range "
            f"search_space.learning_rate [{declared[0]:.3g}, {declared[1]:.3g}]: set its {side} to {value:.3g} "
            "in the study file to search around it"
            + (", or leave out --min-lr / --max-lr to ramp over the study's range" if min_lr or max_lr else "")
        )
    return result


def check_lr_find_options(
    *, min_lr: float | None = None, max_lr: float | None = None, num_steps: int | None = None,
    batch_size: int | None = None,
) -> None:
    """Raise :class:`LRRangeError` naming the ``lr-find`` option that is out of range."""
    for option, value in (("--min-lr", min_lr), ("--max-lr", max_lr)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise LRRangeError(f"{option} is {value:g}; expected a learning rate above 0, such as 1e-4")
    if min_lr is not None and max_lr is not None and min_lr >= max_lr:
        raise LRRangeError(
            f"--min-lr {min_lr:g} is not below --max-lr {max_lr:g}; the ramp climbs from --min-lr up to --max-lr"
        )
    if num_steps is not None and num_steps < 3:
        raise LRRangeError(
            f"--num-steps is {num_steps}; expected at least 3 batches (2 updates and a last measurement), "
            "or leave it out for the default: 100 steps, over up to 3 epochs of the training data"
        )
    if batch_size is not None and batch_size < 1:
        raise LRRangeError(f"--batch-size is {batch_size}; expected at least 1")


def lr_find_report(result: LRRangeResult, plot: str | None) -> list[str]:
    """The lines ``stepsize lr-find`` prints: the run, the suggestion, its confidence, the notes."""
    stop = result.stop_reason
    lines = [f"ramp {result.min_lr:.3g} -> {result.max_lr:.3g} ({result.mode}), {result.num_steps} steps "
             f"({epochs_of(result.num_steps, result.steps_per_epoch)}); {stop}"]
    if result.suggested_lr is None:
        return [*lines, "no suggestion: " + "; ".join(result.notes)]
    low, high = result.bounds
    lines.append(f"suggested learning_rate: {result.suggested_lr:.4g}")
    lines.append(f"suggested search range: [{low:.4g}, {high:.4g}]" + ("" if result.confident else " (not confident)"))
    yes_no = "yes" if result.confident else "no"
    lines.append(f"confident: {yes_no} ({result.confidence_reason})")
    lines += [f"note: {note}" for note in result.notes]
    return [*lines, f"plot: {plot}"] if plot else lines


def narrowed_spec(spec: StudySpec, result: LRRangeResult) -> tuple[StudySpec, dict[str, Any]]:
    """``spec`` with its LR range narrowed to the test's bounds, and the record of the choice.

    The declared range is kept when the test was not confident or the intersection would span
    less than a factor of 3.
    """
    declared = declared_lr_range(spec)
    if declared is None:
        raise SpecError("lr_bounds", "auto", "declared when the search space has no float learning_rate")
    record: dict[str, Any] = {"declared": list(declared), "result": result.to_dict()}
    chosen = declared
    if result.confident and result.bounds is not None:
        low, high = max(declared[0], result.bounds[0]), min(declared[1], result.bounds[1])
        if high >= low * MIN_SPAN:
            chosen = (low, high)
        else:
            record["note"] = f"the suggested bounds {result.bounds} leave under {MIN_SPAN:g}x of the declared range; kept it"
    else:
        record["note"] = "the range test was not confident (" + "; ".join(result.notes or ["no edge"]) + "); kept the declared range"
    record["chosen"] = list(chosen)
    if chosen == declared:
        return spec, record
    params = tuple(
        dataclasses.replace(p, distribution=FloatDistribution(chosen[0], chosen[1], log=p.distribution.log))
        if p.name == "learning_rate" else p
        for p in spec.search_space.params
    )
    return dataclasses.replace(spec, search_space=SearchSpace(params)), record


def auto_lr_bounds(spec: StudySpec) -> tuple[StudySpec, dict[str, Any]]:
    """Run the range test as a Ray task with one trial's resources, then narrow the LR range."""
    import ray

    remote = ray.remote(num_cpus=spec.resources.cpus, num_gpus=spec.resources.gpu)(find_lr)
    # The task needs no URL: a password in one stays on the driver.
    shipped = dataclasses.replace(spec, storage=for_storing(spec.storage), tracking_uri=for_storing(spec.tracking_uri))
    result = ray.get(remote.remote(shipped))
    return narrowed_spec(spec, result)


def lr_range_summary(record: dict[str, Any]) -> str:
    """One line for the terminal: the suggestion and the LR range the search will use."""
    result = record["result"]
    low, high = record["chosen"]
    text = f"LR range test: suggested lr {result['suggested_lr']:.3g}" if result.get("suggested_lr") else "LR range test: no suggestion"
    text += f"; searching learning_rate in [{low:.3g}, {high:.3g}]"
    return text + (f" ({record['note']})" if record.get("note") else "")


def save_lr_range(study: Any, spec: StudySpec, record: dict[str, Any], results_dir: str) -> str | None:
    """Keep the test on the study (user attribute ``stepsize.lr_range``) and its plot as
    ``<results_dir>/<study>/lr_range.png``; returns the plot's path."""
    from pathlib import Path

    from orchestrator.lr_range.plot import plot_lr_range

    study.set_user_attr(StudyAttr.LR_RANGE, record)
    if "://" in results_dir:
        return None
    path = Path(results_dir) / spec.name / "lr_range.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return plot_lr_range(LRRangeResult.from_dict(record["result"]), path, title=f"LR range test: {spec.name}")
